"""One emulated modem: the AT command interpreter of the module side, as a state machine.

Pure where it can be: bytes go in through :meth:`Modem.feed`, bytes come out through the
sink attached to each port, and anything that happens later (a USSD answer, the deadline
of a ``+CNMA``, a network retry, a reboot) is scheduled on a :class:`Clock` — asyncio's
loop in the hub, :class:`ManualClock` in unit tests. No file descriptors, no tasks.

What the host sees follows 3GPP 27.007/27.005 and the module's manual (see ``profiles``):
echo until ``ATE0``; ``\\r\\n<info>\\r\\n`` blocks then ``\\r\\nOK\\r\\n``; ``;``-chained
commands stop at the first error; errors follow ``+CMEE`` (0 plain ``ERROR``, 1 numeric, 2
verbose). SMS come in from :meth:`deliver` through the SIM's network queue, are routed by
``+CNMI`` and the message class (23.038: class 2 always goes to the SIM; under ``<mt>=2``
everything else comes direct as ``+CMT``, which must be acknowledged with ``+CNMA`` under
``+CSMS=1`` or the module turns delivery off), and wait in the network while the modem is
off, unregistered or its storage is full.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Protocol

from agent.emulate.modems.profiles import ROLE_AT, ROLE_DIAG, ROLE_NMEA, Profile
from agent.emulate.modems.sim import SimCard, pack_gsm7_hex, unpack_gsm7_hex
from agent.emulate.modems.storage import REC_READ, REC_UNREAD, CombinedStorage, Memory, SmsStorage
from agent.errors import ProtocolError
from agent.protocol import gsm7
from agent.protocol import pdu as pdu_codec
from agent.protocol.results import CMS_ERRORS

CME_TEXT = {
    3: "operation not allowed",
    4: "operation not supported",
    10: "SIM not inserted",
    30: "no network service",
    50: "Incorrect parameters",
    100: "unknown",
}
# Verbose +CMS ERROR text (AT+CMEE=2) is 27.005 3.2.5's wording: agent.protocol.results
# holds that table, and the module side prints from the same one. The codes a send ends
# with are the SMSC's RP causes passed through (21, 38, 42, 50 ...) or the module's own
# 3xx; docs/modems.md says which the emulator gives when.
CMGL_STAT_TEXT = {0: "REC UNREAD", 1: "REC READ", 2: "STO UNSENT", 3: "STO SENT", 4: "ALL"}

FAULTS_ON_OUTPUT = ("hang", "slow", "garbage")
NO_CREDIT_CMS = 21  # what an operator's SMSC answers a prepaid SIM without credit
SMS_BODY_LIMIT = 1024  # bytes taken after the "> " prompt; a longer body is refused (304)


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """What the modem needs of time: asyncio's event loop has exactly this shape."""

    def call_later(
        self, delay: float, callback: Callable[..., object], *args: object
    ) -> Cancellable: ...

    def time(self) -> float: ...


class _ManualTimer:
    def __init__(self, callback: Callable[..., object], args: tuple[object, ...]) -> None:
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A clock that moves only when told: unit tests drive timers deterministically."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, _ManualTimer]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self.now

    def call_later(
        self, delay: float, callback: Callable[..., object], *args: object
    ) -> _ManualTimer:
        timer = _ManualTimer(callback, args)
        heapq.heappush(self._heap, (self.now + max(delay, 0.0), next(self._order), timer))
        return timer

    def advance(self, seconds: float = 0.0) -> None:
        """Run every timer due within ``seconds`` from now, in order, then move the clock."""
        until = self.now + seconds
        while self._heap and self._heap[0][0] <= until:
            when, _, timer = heapq.heappop(self._heap)
            self.now = max(self.now, when)
            if not timer.cancelled:
                timer.callback(*timer.args)
        self.now = until


class AtError(Exception):
    """A command's failure: ``kind`` "ERROR" (always plain), "CME" or "CMS"."""

    def __init__(self, kind: str, code: int = 0) -> None:
        self.kind = kind
        self.code = code
        super().__init__(f"{kind} {code}")


@dataclass(frozen=True)
class Pending:
    """One SMS part on its way from the network: what inject produced, per PDU."""

    sms_id: str
    part: int
    pdu: bytes
    message_class: int | None

    @property
    def tpdu_length(self) -> int:
        return len(self.pdu) - 1 - self.pdu[0]


@dataclass(frozen=True)
class Settings:
    """What a reset (ATZ, reboot) takes back to the stored profile; ``echo`` is the stored
    default of each port's own echo."""

    echo: bool
    verbose: bool
    cmee: int
    cmgf: int
    cscs: str
    cnmi: tuple[int, int, int, int, int]
    csms: int
    cpms: tuple[str, str, str]
    creg: int
    cgreg: int
    cereg: int
    cops_format: int
    curc: int
    csdh: int
    cusd: int
    portsel: int
    clip: int


class _Channel:
    """An AT port of the modem: its own line buffer, its own output sink."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.echo = True  # per port, as on the EC25's two AT interfaces
        self.sink: Callable[[bytes], None] = _discard
        self.ready_at = 0.0  # when delayed ("slow") output may go next, keeping order
        # After AT+CMGS's "> " prompt: the body typed so far (None: not in a body), and
        # what the command said (PDU mode: the TPDU length; text mode: the recipient).
        self.body: bytearray | None = None
        self.submit: int | str = 0


def _discard(_data: bytes) -> None:
    """Output of a port nobody attached: lost, like a UART with nothing listening."""


EventSink = Callable[..., None]


@dataclass(frozen=True)
class Submitted:
    """An SMS this modem's SIM sent (AT+CMGS accepted): the hub routes it."""

    recipient: str
    text: str
    reference: int


class _Call:
    """An incoming call that rings until rejected (ATH / AT+CHUP) or the caller gives up."""

    def __init__(self, call_id: str, caller: str) -> None:
        self.call_id = call_id
        self.caller = caller
        self.rings = 0
        self.timers: list[Cancellable] = []


class Modem:
    """One emulated module with its SIM, storage, settings and faults."""

    def __init__(
        self,
        profile: Profile,
        sim: SimCard | None,
        imei: str,
        clock: Clock,
        rng: random.Random,
        *,
        boot_id: int = 0,
        cnma_timeout: float = 5.0,
        network_retry: float = 2.0,
        ussd_delay: float = 0.3,
        reset_delay: float = 0.2,
        slow_delay: float = 3.0,
        ring_interval: float = 3.0,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.profile = profile
        self.sim = sim
        self.imei = imei
        self.clock = clock
        self.rng = rng
        self.boot_id = boot_id
        self.cnma_timeout = cnma_timeout
        self.network_retry = network_retry
        self.ussd_delay = ussd_delay
        self.reset_delay = reset_delay
        self.slow_delay = slow_delay
        self.ring_interval = ring_interval
        self.wall_clock = wall_clock
        self.on_event: EventSink = lambda kind, item, **details: None
        self.on_submit: Callable[[Submitted], None] = lambda submitted: None
        self.on_call: Callable[..., None] = lambda kind, call_id, **details: None
        self._awaiting_body: int | str | None = None
        self._call: _Call | None = None
        self.me = SmsStorage("ME", profile.me_capacity)
        self.factory = Settings(
            echo=True,
            verbose=True,
            cmee=0,
            cmgf=0,
            cscs=profile.default_charset,
            cnmi=profile.cnmi_default,
            csms=0,
            cpms=profile.default_cpms,
            creg=0,
            cgreg=0,
            cereg=0,
            cops_format=0,
            curc=1,
            csdh=0,
            cusd=0,
            portsel=0,
            clip=0,
        )
        self.saved = self.factory
        self.settings = self.factory
        self.urc_port = "usbat"  # AT+QURCCFG, Quectel only; non-volatile
        self.channels: dict[int, _Channel] = {
            spec.interface: _Channel() for spec in profile.ports if spec.role == ROLE_AT
        }
        self.urc_interface = (
            min(self.channels) if profile.urc_interface is None else profile.urc_interface
        )
        self.aux_sinks: dict[int, Callable[[bytes], None]] = {}
        self.powered = False
        self.synced = True
        self.cfun = 1
        self.network_ok = True
        self.ipr = 0 if profile.autobaud else 115200
        self.faults: set[str] = set()
        self.csq = rng.randint(12, 28)
        self._memfull_said = False
        self._pending_ack: tuple[Pending, Cancellable] | None = None
        self._pump_timer: Cancellable | None = None
        self._timers: set[Cancellable] = set()
        self._table = self._handlers()

    # ----------------------------------------------------------------- wiring and power

    def attach(self, interface: int, sink: Callable[[bytes], None]) -> None:
        """Send what the modem writes on ``interface`` to ``sink`` (a pty master writer)."""
        if interface in self.channels:
            self.channels[interface].sink = sink
        else:
            self.aux_sinks[interface] = sink

    def power_on(self) -> None:
        """Power-up: stored settings, boot URCs, autobaud unsynced until the first ``AT``."""
        self.powered = True
        self.faults.discard("hang")  # what a power cycle is for
        self.settings = self.saved
        self.cfun = 1
        self.synced = self.ipr != 0
        self._memfull_said = False
        if self.profile.me_volatile:
            self.me.clear()
        for channel in self.channels.values():
            channel.buffer.clear()
            channel.echo = self.saved.echo
        self._later(0.0, self._boot_urcs)
        self._schedule_pump()

    def power_off(self) -> None:
        """Power gone: timers stop, an unacknowledged ``+CMT`` goes back to the network,
        a ringing call is lost (the caller hears the network's "not reachable")."""
        self.powered = False
        self._end_call("lost")
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._pump_timer is not None:
            self._pump_timer.cancel()
            self._pump_timer = None
        self._requeue_unacked()

    def reboot(self) -> None:
        self.power_off()
        self.power_on()

    def _boot_urcs(self) -> None:
        for line in self.profile.boot_urcs:
            if line == "RDY" and self.ipr == 0:
                continue  # an autobauding SIM800 cannot know the rate to say RDY at
            self._urc(line.format(boot=self.boot_id))

    def _later(self, delay: float, callback: Callable[[], None]) -> None:
        holder: list[Cancellable] = []

        def fire() -> None:
            self._timers.discard(holder[0])
            callback()

        holder.append(self.clock.call_later(delay, fire))
        self._timers.add(holder[0])

    # ---------------------------------------------------------------------- output

    def _send(self, interface: int, data: bytes) -> None:
        if not self.powered or "hang" in self.faults:
            return
        if "garbage" in self.faults:
            data = self._splice_garbage(data)
        channel = self.channels.get(interface)
        sink = channel.sink if channel is not None else self.aux_sinks.get(interface, _discard)
        if "slow" in self.faults and channel is not None:
            # Late, but in order: each chunk leaves no earlier than the one before it.
            now = self.clock.time()
            channel.ready_at = max(now + self.slow_delay, channel.ready_at)
            self._later(channel.ready_at - now, lambda: sink(data))
            return
        sink(data)

    def _splice_garbage(self, data: bytes) -> bytes:
        noise = bytes(self.rng.randrange(256) for _ in range(self.rng.randint(1, 8)))
        # Between lines, so that a framer can resync on the next CR LF.
        cut = data.rfind(b"\r\n", 0, max(len(data) - 2, 0))
        at = max(cut, 0)
        return data[:at] + noise + data[at:]

    def _urc(self, text: str | bytes) -> None:
        if not self.synced:
            return
        self._send(self.urc_interface, self._frame_info([text]))

    def _frame_info(self, lines: Sequence[str | bytes]) -> bytes:
        """The lines as the module writes them; a ``str`` line as Latin-1, a ``bytes``
        line (already in the TE character set) as it is."""
        body = b"\r\n".join(
            line if isinstance(line, bytes) else line.encode("latin-1", "replace") for line in lines
        )
        return b"\r\n" + body + b"\r\n" if self.settings.verbose else body + b"\r\n"

    def _frame_final(self, error: AtError | None) -> bytes:
        if error is None:
            return b"\r\nOK\r\n" if self.settings.verbose else b"0\r"
        cmee = self.settings.cmee
        if error.kind == "ERROR" or cmee == 0:
            return b"\r\nERROR\r\n" if self.settings.verbose else b"4\r"
        texts = CME_TEXT if error.kind == "CME" else CMS_ERRORS
        detail = str(error.code) if cmee == 1 else texts.get(error.code, "unknown")
        line = f"+{error.kind} ERROR: {detail}"
        return f"\r\n{line}\r\n".encode() if self.settings.verbose else f"{line}\r\n".encode()

    # ----------------------------------------------------------------------- input

    def feed(self, interface: int, data: bytes) -> None:
        """Bytes the host wrote to ``interface``; answers go out through the port's sink."""
        channel = self.channels.get(interface)
        if channel is None or not self.powered or "hang" in self.faults:
            return
        if self.synced and channel.echo:
            self._send(interface, data)
        for byte in data:
            if channel.body is not None:
                self._body_byte(interface, channel, byte)
            elif byte == 0x0D:
                line = bytes(channel.buffer)
                channel.buffer.clear()
                self._line(interface, line)
            elif byte == 0x0A:
                continue
            elif byte in (0x08, 0x7F):
                del channel.buffer[-1:]
            elif len(channel.buffer) < 4096:
                channel.buffer.append(byte)

    def _line(self, interface: int, raw: bytes) -> None:
        text = raw.decode("latin-1")
        start = _find_at(text)
        if start < 0:
            return
        if not self.synced:
            self.synced = True  # autobaud: this AT taught the module the rate; no answer
            return
        body = text[start + 2 :]
        out = bytearray()
        self._awaiting_body = None
        try:
            commands = _split_commands(body)
            for command in commands:
                lines = self._execute(interface, command)
                if lines:
                    out += self._frame_info(lines)
                if self._awaiting_body is not None:
                    break  # AT+CMGS ends the line: the body follows the prompt
        except AtError as error:
            self._send(interface, bytes(out) + self._frame_final(error))
            return
        if self._awaiting_body is not None:
            channel = self.channels[interface]
            channel.body, channel.submit = bytearray(), self._awaiting_body
            self._awaiting_body = None
            self._send(interface, bytes(out) + b"\r\n> ")
            return
        self._send(interface, bytes(out) + self._frame_final(None))

    # ------------------------------------------------------------------ dispatch

    def _execute(self, interface: int, command: str) -> list[str]:
        if command[0] not in "+^":
            return self._basic(self.channels[interface], command)
        name, form, args = _parse_extended(command)
        handler = self._table.get(name)
        if handler is None:
            raise AtError("CME", 100)
        return handler(form, args)

    def _handlers(self) -> dict[str, Callable[[str, list[str | int | None]], list[str]]]:
        table: dict[str, Callable[[str, list[str | int | None]], list[str]]] = {
            "+CGMI": self._identity(self.profile.manufacturer),
            "+GMI": self._identity(self.profile.manufacturer),
            "+CGMM": self._identity(self.profile.model),
            "+GMM": self._identity(self.profile.model),
            "+CGMR": self._identity(self.profile.revision),
            "+GMR": self._identity(self.profile.revision),
            "+CGSN": self._identity(self.imei),
            "+GSN": self._identity(self.imei),
            "+GCAP": self._identity("+GCAP: +CGSM"),
            "+CIMI": self._cimi,
            "+CRSM": self._crsm,
            "+CPIN": self._cpin,
            "+CSQ": self._csq,
            "+CREG": self._registration("+CREG", "creg"),
            "+COPS": self._cops,
            "+CMEE": self._setting("+CMEE", "cmee", (0, 1, 2)),
            "+CMGF": self._setting("+CMGF", "cmgf", (0, 1)),
            "+CSDH": self._setting("+CSDH", "csdh", (0, 1)),
            "+CSCS": self._cscs,
            "+CSMS": self._csms,
            "+CPMS": self._cpms,
            "+CNMI": self._cnmi,
            "+CNMA": self._cnma,
            "+CMGL": self._cmgl,
            "+CMGR": self._cmgr,
            "+CMGD": self._cmgd,
            "+CNUM": self._cnum,
            "+CSCA": self._csca,
            "+CSMP": self._csmp,
            "+CUSD": self._cusd,
            "+CMGS": self._cmgs,
            "+CLIP": self._setting("+CLIP", "clip", (0, 1)),
            "+CFUN": self._cfun,
            "+CCLK": self._cclk,
            "+IPR": self._ipr,
        }
        extras = self.profile.extra_commands
        if "+CGREG" in extras:
            table["+CGREG"] = self._registration("+CGREG", "cgreg")
        if "+CEREG" in extras:
            table["+CEREG"] = self._registration("+CEREG", "cereg")
        if "+CCID" in extras:
            table["+CCID"] = self._ccid
        if "+QCCID" in extras:
            table["+QCCID"] = self._qccid
        if "^ICCID" in extras:
            table["^ICCID"] = self._hw_iccid
        if "+CHUP" in extras:
            table["+CHUP"] = self._chup
        if "+QURCCFG" in extras:
            table["+QURCCFG"] = self._qurccfg
        if "^CURC" in extras:
            table["^CURC"] = self._setting("^CURC", "curc", (0, 1))
        if "^PORTSEL" in extras:
            # Which interface gets URCs (0 modem, 1 PCUI); only the PCUI is emulated, so
            # it gets them either way.
            table["^PORTSEL"] = self._setting("^PORTSEL", "portsel", (0, 1))
        return table

    def _basic(self, channel: _Channel, command: str) -> list[str]:
        """V.250 basic commands: a letter (or & and a letter) and an optional number."""
        if command.startswith("&"):
            if command[:2] == "&F":
                self.settings = self.factory
                channel.echo = self.factory.echo
                return []
            if command[:2] == "&W":
                self.saved = replace(self.settings, echo=channel.echo)
                return []
            if command[:2] in ("&C", "&D", "&K"):
                return []  # DCD / DTR / flow control: nothing to emulate on a pty
            raise AtError("ERROR")
        letter, digits = command[0], command[1:]
        value = int(digits) if digits.isdigit() else 0
        if letter == "E" and value in (0, 1):
            channel.echo = bool(value)
            return []
        if letter == "V" and value in (0, 1):
            self.settings = replace(self.settings, verbose=bool(value))
            return []
        if letter == "H":
            self._end_call("rejected")
            return []
        if letter in ("Q", "X", "L", "M"):
            return []
        if letter == "Z":
            self.settings = self.saved
            channel.echo = self.saved.echo
            return []
        if letter == "I":
            return [line.format(imei=self.imei) for line in self.profile.ati]
        if letter == "S":
            return ["000"] if command.endswith("?") else []
        raise AtError("ERROR")

    # ------------------------------------------------------------- identity and SIM

    def _identity(self, answer: str) -> Callable[[str, list[str | int | None]], list[str]]:
        def handler(form: str, _args: list[str | int | None]) -> list[str]:
            return [] if form == "=?" else [answer]

        return handler

    def _need_sim(self, kind: str = "CME") -> SimCard:
        if self.sim is None:
            raise AtError(kind, 10 if kind == "CME" else 310)
        return self.sim

    def _cimi(self, form: str, _args: list[str | int | None]) -> list[str]:
        sim = self._need_sim()
        return [] if form == "=?" else [sim.imsi]

    def _ccid(self, form: str, _args: list[str | int | None]) -> list[str]:
        sim = self._need_sim()
        return [] if form == "=?" else [sim.iccid]

    def _qccid(self, form: str, _args: list[str | int | None]) -> list[str]:
        sim = self._need_sim()
        return [] if form == "=?" else [f"+QCCID: {sim.iccid.ljust(20, 'F')}"]

    def _qurccfg(self, form: str, args: list[str | int | None]) -> list[str]:
        """Quectel's URC port: kept in non-volatile memory as on the module (it outlives a
        reset). Only if2 is emulated as the URC port, so the choice changes no routing."""
        ports = ("usbat", "usbmodem", "uart1")
        if form == "=?":
            return ['+QURCCFG: "urcport",("usbat","usbmodem","uart1")']
        if form == "=" and args and str(args[0]).lower() == "urcport":
            if len(args) == 1:
                return [f'+QURCCFG: "urcport","{self.urc_port}"']
            if isinstance(args[1], str) and args[1].lower() in ports:
                self.urc_port = args[1].lower()
                return []
        raise AtError("CME", 50)

    def _hw_iccid(self, form: str, _args: list[str | int | None]) -> list[str]:
        sim = self._need_sim()
        if form != "?":
            raise AtError("CME", 4)
        return [f"^ICCID: {sim.ef_iccid}"]

    def _crsm(self, form: str, args: list[str | int | None]) -> list[str]:
        sim = self._need_sim()
        if form == "=?":
            return []
        if form != "=" or not args or not isinstance(args[0], int):
            raise AtError("CME", 50)
        if args[:2] == [176, 12258]:
            return [f'+CRSM: 144,0,"{sim.ef_iccid}"']
        return ['+CRSM: 106,130,""']

    def _cpin(self, form: str, _args: list[str | int | None]) -> list[str]:
        if form == "=?":
            return []
        self._need_sim()
        if form == "?":
            return ["+CPIN: READY"]
        raise AtError("CME", 3)

    def _cnum(self, form: str, _args: list[str | int | None]) -> list[str]:
        sim = self._need_sim()
        if form == "=?" or not sim.number_stored:
            return []
        return [f'+CNUM: "","{sim.msisdn}",145']

    def _csca(self, form: str, _args: list[str | int | None]) -> list[str]:
        sim = self._need_sim("CMS")
        return [f'+CSCA: "{sim.smsc}",145'] if form == "?" else []

    def _csmp(self, form: str, _args: list[str | int | None]) -> list[str]:
        return ["+CSMP: 17,167,0,0"] if form == "?" else []

    # ---------------------------------------------------------------------- network

    @property
    def registration_status(self) -> int:
        """<stat> of +CREG: 1 registered (home), 2 searching, 0 not searching (radio off),
        3 denied (the SIM lapsed: see agent.emulate.modems.sim)."""
        if not self.powered or self.cfun != 1 or self.sim is None:
            return 0
        if self.sim.lapsed(self.wall_clock().timestamp()):
            return 3
        return 1 if self.network_ok else 2

    def _csq(self, form: str, _args: list[str | int | None]) -> list[str]:
        if form == "=?":
            return ["+CSQ: (0-31,99),(0-7,99)"]
        if self.cfun != 1:
            return ["+CSQ: 99,99"]
        return [f"+CSQ: {self.csq},{self.profile.csq_ber}"]

    def _registration(
        self, prefix: str, key: str
    ) -> Callable[[str, list[str | int | None]], list[str]]:
        def handler(form: str, args: list[str | int | None]) -> list[str]:
            if form == "=?":
                return [f"{prefix}: (0-2)"]
            if form == "?":
                mode = getattr(self.settings, key)
                stat = self.registration_status
                if mode == 2 and stat in (1, 5):
                    return [f'{prefix}: {mode},{stat},"1A2B","00C3D4E5"']
                return [f"{prefix}: {mode},{stat}"]
            if form == "=" and args and args[0] in (0, 1, 2):
                self.settings = replace(self.settings, **{key: args[0]})
                return []
            raise AtError("CME", 50)

        return handler

    def _announce_registration(self) -> None:
        stat = self.registration_status
        for prefix, key in (("+CREG", "creg"), ("+CGREG", "cgreg"), ("+CEREG", "cereg")):
            if getattr(self.settings, key) and (
                prefix == "+CREG" or prefix in self.profile.extra_commands
            ):
                self._urc(f"{prefix}: {stat}")

    def _cops(self, form: str, args: list[str | int | None]) -> list[str]:
        sim = self.sim
        if form == "=?":
            if sim is None or self.registration_status != 1:
                return ["+COPS: ,,(0-4),(0-2)"]
            op = sim.operator
            return [f'+COPS: (2,"{op.long_name}","{op.short_name}","{op.mcc_mnc}"),,(0-4),(0-2)']
        if form == "?":
            if sim is None or self.registration_status != 1:
                return ["+COPS: 0"]
            op = sim.operator
            fmt = self.settings.cops_format
            name = (op.long_name, op.short_name, op.mcc_mnc)[fmt]
            act = "" if self.profile.cops_act is None else f",{self.profile.cops_act}"
            return [f'+COPS: 0,{fmt},"{name}"{act}']
        if form == "=" and args and args[0] == 3 and len(args) > 1 and args[1] in (0, 1, 2):
            self.settings = replace(self.settings, cops_format=args[1])
            return []
        if form == "=" and args and args[0] == 0:
            return []
        raise AtError("CME", 3)

    def _cfun(self, form: str, args: list[str | int | None]) -> list[str]:
        if form == "=?":
            return ["+CFUN: (0,1,4),(0,1)"]
        if form == "?":
            return [f"+CFUN: {self.cfun}"]
        if form != "=" or not args or args[0] not in (0, 1, 4):
            raise AtError("CME", 50)
        if len(args) > 1 and args[1] == 1:
            # Reset after the OK has gone out, as the module does.
            self._later(self.reset_delay, self.reboot)
            return []
        self.cfun = 1 if args[0] == 1 else 0
        self._announce_registration()
        self._schedule_pump()
        return []

    def _cclk(self, form: str, _args: list[str | int | None]) -> list[str]:
        if form != "?":
            return []
        quarters = self.sim.operator.tz_quarters if self.sim else 0
        local = self.wall_clock().astimezone(timezone(timedelta(minutes=15 * quarters)))
        return [f'+CCLK: "{local:%y/%m/%d,%H:%M:%S}{quarters:+03d}"']

    def _ipr(self, form: str, args: list[str | int | None]) -> list[str]:
        if form == "=?":
            return ["+IPR: (),(0,1200,2400,4800,9600,19200,38400,57600,115200)"]
        if form == "?":
            return [f"+IPR: {self.ipr}"]
        if (
            form == "="
            and args
            and args[0] in (0, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
        ):
            self.ipr = int(args[0])  # SIM800 keeps the rate across restarts without &W
            return []
        raise AtError("CME", 50)

    def _cusd(self, form: str, args: list[str | int | None]) -> list[str]:
        if form == "=?":
            return ["+CUSD: (0-2)"]
        if form == "?":
            return [f"+CUSD: {self.settings.cusd}"]
        if form != "=" or not args or args[0] not in (0, 1, 2):
            raise AtError("CME", 50)
        self.settings = replace(self.settings, cusd=1 if args[0] == 1 else 0)
        if len(args) < 2 or args[1] is None:
            return []
        sim = self._need_sim()
        if self.registration_status != 1:
            raise AtError("CME", 30)
        code = str(args[1])
        if self.profile.ussd_packed_request:
            try:
                code = unpack_gsm7_hex(code)
            except ValueError:
                raise AtError("CME", 100) from None
        answer = sim.ussd_answer(code, self.wall_clock().timestamp())
        line = "+CUSD: 2" if answer is None else self._ussd_line(*answer)
        self._later(self.ussd_delay, lambda: self._urc(line))
        return []

    def _ussd_line(self, text: str, encoding: str, status: int) -> str | bytes:
        """The +CUSD URC as this module prints it: with ``+CSCS="UCS2"`` every answer is
        UCS2 hex; a module that prints text (SIM800) writes a GSM 7-bit answer in the TE
        character set (:meth:`_te_text`); otherwise the string comes as the network sent
        it, packed hex or UCS2 hex."""
        if self.settings.cscs == "UCS2" or encoding == "ucs2":
            return f'+CUSD: {status},"{text.encode("utf-16-be").hex().upper()}",72'
        if self.profile.ussd_text_answers:
            return f'+CUSD: {status},"'.encode() + self._te_text(text) + b'",15'
        return f'+CUSD: {status},"{pack_gsm7_hex(text)}",15'

    def _te_text(self, text: str) -> bytes:
        """``text`` in the TE character set of ``+CSCS`` (27.007 5.5), as a SIM800 prints
        it (docs/modems.md, "USSD answers in the GSM character set"): "GSM" is the GSM
        7-bit default alphabet, a byte per septet ('£' is 0x01, '€' the escape 0x1B then
        0x65); "8859-1" is Latin-1; "IRA" (and the others) is ASCII. A character the set
        cannot hold is printed as '?'."""
        if self.settings.cscs == "GSM":
            table = gsm7.encode_table()
            return b"".join(table.get(char, b"?") for char in text)
        if self.settings.cscs == "8859-1":
            return text.encode("latin-1", "replace")
        return text.encode("ascii", "replace")

    # --------------------------------------------------------------- SMS settings

    def _setting(
        self, prefix: str, key: str, allowed: tuple[int, ...]
    ) -> Callable[[str, list[str | int | None]], list[str]]:
        def handler(form: str, args: list[str | int | None]) -> list[str]:
            if form == "=?":
                return [f"{prefix}: ({','.join(map(str, allowed))})"]
            if form == "?":
                return [f"{prefix}: {getattr(self.settings, key)}"]
            if form == "=" and args and args[0] in allowed:
                self.settings = replace(self.settings, **{key: args[0]})
                return []
            raise AtError("CME", 50)

        return handler

    def _cscs(self, form: str, args: list[str | int | None]) -> list[str]:
        if form == "=?":
            return ["+CSCS: (" + ",".join(f'"{c}"' for c in self.profile.charsets) + ")"]
        if form == "?":
            return [f'+CSCS: "{self.settings.cscs}"']
        if (
            form == "="
            and args
            and isinstance(args[0], str)
            and args[0].upper() in self.profile.charsets
        ):
            self.settings = replace(self.settings, cscs=args[0].upper())
            return []
        raise AtError("CME", 4)

    def _csms(self, form: str, args: list[str | int | None]) -> list[str]:
        if form == "=?":
            return ["+CSMS: (0,1)"]
        if form == "?":
            return [f"+CSMS: {self.settings.csms},1,1,1"]
        if form == "=" and args and args[0] in (0, 1):
            self.settings = replace(self.settings, csms=args[0])
            return ["+CSMS: 1,1,1"]
        raise AtError("CMS", 303)

    def _memory(self, name: str) -> Memory:
        name = self.profile.memory_aliases.get(name, name)
        if name == "ME":
            return self.me
        sim = self._need_sim("CMS")
        if name == "SM":
            return sim.storage
        return CombinedStorage(sim.storage, self.me)

    def _cpms(self, form: str, args: list[str | int | None]) -> list[str]:
        names = ",".join(f'"{m}"' for m in self.profile.memories)
        if form == "=?":
            return [f"+CPMS: ({names}),({names}),({names})"]
        self._need_sim("CMS")
        if form == "?":
            parts = []
            for name in self.settings.cpms:
                memory = self._memory(name)
                parts.append(f'"{name}",{memory.used},{memory.capacity}')
            return ["+CPMS: " + ",".join(parts)]
        if form != "=" or not args or len(args) > 3:
            raise AtError("CMS", 302)
        chosen = list(self.settings.cpms)
        for position, value in enumerate(args):
            if value is None:
                continue
            if not isinstance(value, str) or value.upper() not in self.profile.memories:
                raise AtError("CMS", 302)
            chosen[position] = value.upper()
        self.settings = replace(self.settings, cpms=(chosen[0], chosen[1], chosen[2]))
        counts = []
        for name in chosen:
            memory = self._memory(name)
            counts.append(f"{memory.used},{memory.capacity}")
        self._schedule_pump()
        return ["+CPMS: " + ",".join(counts)]

    def _cnmi(self, form: str, args: list[str | int | None]) -> list[str]:
        support = self.profile.cnmi_support
        if form == "=?":
            return ["+CNMI: " + ",".join(_range_text(values) for values in support)]
        if form == "?":
            return ["+CNMI: " + ",".join(map(str, self.settings.cnmi))]
        if form != "=" or not args or len(args) > 5:
            raise AtError("CMS", 303)
        values = list(self.settings.cnmi)
        for position, value in enumerate(args):
            if value is None:
                continue
            if not isinstance(value, int) or value not in support[position]:
                raise AtError("CMS", 303)  # the module does not do this combination
            values[position] = value
        self.settings = replace(
            self.settings, cnmi=(values[0], values[1], values[2], values[3], values[4])
        )
        self._schedule_pump()
        return []

    # ------------------------------------------------------------ reading storage

    def _index(self, value: str | int | None, memory: Memory) -> int:
        if not isinstance(value, int):
            raise AtError("CMS", 321)
        slot = value - self.profile.index_base
        if not memory.valid(slot):
            raise AtError("CMS", 321)
        return slot

    def _text_header(self, stat: int, stored_pdu: bytes) -> tuple[str, str]:
        sms = pdu_codec.decode(stored_pdu)
        stamp = sms.timestamp
        quarters = int((stamp.utcoffset() or timedelta()).total_seconds() // 900)
        when = f"{stamp:%y/%m/%d,%H:%M:%S}{quarters:+03d}"
        text = sms.text
        if self.settings.cscs == "UCS2":
            text = text.encode("utf-16-be").hex().upper()
        return f'"{CMGL_STAT_TEXT[stat]}","{sms.sender}",,"{when}"', text

    def _cmgl(self, form: str, args: list[str | int | None]) -> list[str]:
        text_mode = self.settings.cmgf == 1
        if form == "=?":
            if text_mode:
                return ['+CMGL: ("REC UNREAD","REC READ","STO UNSENT","STO SENT","ALL")']
            return ["+CMGL: (0-4)"]
        memory = self._memory(self.settings.cpms[0])
        wanted = args[0] if form == "=" and args else (0 if not text_mode else "REC UNREAD")
        if text_mode:
            names = {v: k for k, v in CMGL_STAT_TEXT.items()}
            if not isinstance(wanted, str) or wanted.upper() not in names:
                raise AtError("CMS", 302)
            wanted = names[wanted.upper()]
        elif wanted not in (0, 1, 2, 3, 4):
            raise AtError("CMS", 304)
        lines: list[str] = []
        for slot, stored in memory.items():
            if wanted != 4 and stored.status != wanted:
                continue
            index = slot + self.profile.index_base
            if text_mode:
                header, text = self._text_header(stored.status, stored.pdu)
                lines += [f"+CMGL: {index},{header}", text]
            else:
                lines += [
                    f"+CMGL: {index},{stored.status},,{stored.tpdu_length}",
                    stored.pdu.hex().upper(),
                ]
            stored.status = REC_READ if stored.status == REC_UNREAD else stored.status
        return lines

    def _cmgr(self, form: str, args: list[str | int | None]) -> list[str]:
        if form == "=?":
            return []
        memory = self._memory(self.settings.cpms[0])
        slot = self._index(args[0] if args else None, memory)
        stored = memory.get(slot)
        if stored is None:
            return []
        status = stored.status
        stored.status = REC_READ if status == REC_UNREAD else status
        if self.settings.cmgf == 1:
            header, text = self._text_header(status, stored.pdu)
            return [f"+CMGR: {header}", text]
        return [f"+CMGR: {status},,{stored.tpdu_length}", stored.pdu.hex().upper()]

    def _cmgd(self, form: str, args: list[str | int | None]) -> list[str]:
        memory = self._memory(self.settings.cpms[0])
        if form == "=?":
            used = ",".join(str(slot + self.profile.index_base) for slot, _ in memory.items())
            return [f"+CMGD: ({used}),(0-4)"]
        if form != "=" or not args:
            raise AtError("CMS", 302)
        flag = args[1] if len(args) > 1 and args[1] is not None else 0
        if flag not in (0, 1, 2, 3, 4):
            raise AtError("CMS", 302)
        if flag == 0:
            memory.delete(self._index(args[0], memory))
        else:
            # Only received messages are emulated: flags 1-3 all take the read ones.
            for slot, stored in list(memory.items()):
                if flag == 4 or stored.status == REC_READ:
                    memory.delete(slot)
        self._memfull_said = False
        self._schedule_pump()
        return []

    # --------------------------------------------------------------- SMS sending

    def _cmgs(self, form: str, args: list[str | int | None]) -> list[str]:
        """``AT+CMGS=<length>`` (PDU mode) or ``AT+CMGS="<number>"`` (text mode): the
        prompt comes next and the body is taken by :meth:`_body_byte`."""
        if form == "=?":
            return []
        if form != "=" or not args or args[0] is None:
            raise AtError("CMS", 304 if self.settings.cmgf == 0 else 302)
        self._need_sim("CMS")
        if self.settings.cmgf == 0:
            if not isinstance(args[0], int) or not 7 <= args[0] <= 164:
                raise AtError("CMS", 304)  # a TPDU is 7..164 octets (23.040 9.2.2.2)
            self._awaiting_body = args[0]
        else:
            self._awaiting_body = str(args[0])
        return []

    def _body_byte(self, interface: int, channel: _Channel, byte: int) -> None:
        assert channel.body is not None
        if byte == 0x1B:  # ESC: the body is dropped, nothing is sent
            channel.body = None
            self._send(interface, self._frame_final(None))
        elif byte == 0x1A:  # Ctrl-Z: send
            body, channel.body = bytes(channel.body), None
            try:
                lines = self._submit(body, channel.submit)
            except AtError as error:
                self._send(interface, self._frame_final(error))
                return
            self._send(interface, self._frame_info(lines) + self._frame_final(None))
        elif byte not in (0x0D, 0x0A):
            if len(channel.body) >= SMS_BODY_LIMIT:
                channel.body = None
                self._send(interface, self._frame_final(AtError("CMS", 304)))
                return
            channel.body.append(byte)

    def _submit(self, body: bytes, submit: int | str) -> list[str]:
        """The body after the prompt: check it, refuse it as the network would, or send it."""
        if isinstance(submit, int):
            recipient, text = self._submit_pdu(body, submit)
        else:
            recipient, text = submit, body.decode("latin-1")
        sim = self._need_sim("CMS")
        if self.registration_status != 1:
            raise AtError("CMS", 331)
        if sim.sms_refusal is not None:
            raise AtError("CMS", sim.sms_refusal)
        if not sim.credit:
            raise AtError("CMS", NO_CREDIT_CMS)
        sim.charge(self.wall_clock().timestamp())
        sim.message_reference = (sim.message_reference + 1) % 256
        self.on_submit(Submitted(recipient, text, sim.message_reference))
        return [f"+CMGS: {sim.message_reference}"]

    def _submit_pdu(self, body: bytes, tpdu_length: int) -> tuple[str, str]:
        try:
            data = bytes.fromhex(body.decode("ascii"))
            smsc_octets = data[0] + 1
            if len(data) - smsc_octets != tpdu_length:
                raise ValueError("length differs from AT+CMGS")
            sms = pdu_codec.decode(data)
        except (ValueError, IndexError, ProtocolError):
            raise AtError("CMS", 304) from None
        if not isinstance(sms, pdu_codec.SmsSubmit):
            raise AtError("CMS", 304)
        return sms.recipient, sms.text

    # -------------------------------------------------------------------- calls

    def incoming_call(self, call_id: str, caller: str, *, give_up_after: float) -> None:
        """A call comes in: ``RING`` (and ``+CLIP`` under ``AT+CLIP=1``) every
        ``ring_interval`` seconds until ATH / AT+CHUP rejects it or the caller gives up
        after ``give_up_after`` seconds (then ``NO CARRIER``)."""
        if self.sim is None or self.registration_status != 1:
            raise ValueError("the modem is not on the network: the call cannot reach it")
        if self._call is not None:
            raise ValueError(f"already ringing with call {self._call.call_id}: one call at a time")
        call = _Call(call_id, caller)
        self._call = call
        call.timers.append(self.clock.call_later(give_up_after, self._end_call, "given up"))
        self.on_call("ringing", call_id, caller=caller)
        self._ring()

    def _ring(self) -> None:
        call = self._call
        if call is None:
            return
        call.rings += 1
        self._urc("RING")
        if self.settings.clip:
            kind = 145 if call.caller.startswith("+") else 129
            self._urc(f'+CLIP: "{call.caller}",{kind},"",0,"",0')
        call.timers.append(self.clock.call_later(self.ring_interval, self._ring))

    def _end_call(self, how: str) -> None:
        call, self._call = self._call, None
        if call is None:
            return
        for timer in call.timers:
            timer.cancel()
        if how == "given up":
            self._urc("NO CARRIER")
        self.on_call(how, call.call_id, caller=call.caller, rings=call.rings)

    def _chup(self, form: str, _args: list[str | int | None]) -> list[str]:
        if form == "=?":
            return []
        self._end_call("rejected")
        return []

    # ----------------------------------------------------------- SMS from network

    def deliver(self, items: list[Pending]) -> None:
        """The network has ``items`` for this modem's SIM: queue them, deliver when it can."""
        sim = self.sim
        if sim is None:
            raise ValueError("no SIM in this modem: the network cannot address it")
        sim.network_queue.extend(items)
        for item in items:
            self.on_event("queued", item)
        self._schedule_pump()

    def _schedule_pump(self, delay: float = 0.0) -> None:
        if self._pump_timer is None and self.sim is not None and self.sim.network_queue:
            self._pump_timer = self.clock.call_later(delay, self._pump)

    def _can_receive(self) -> bool:
        return (
            self.powered
            and "hang" not in self.faults
            and self.registration_status == 1
            and self._pending_ack is None
        )

    def _pump(self) -> None:
        self._pump_timer = None
        sim = self.sim
        while sim is not None and sim.network_queue and self._can_receive():
            item = sim.network_queue[0]
            mode, mt = self.settings.cnmi[0], self.settings.cnmi[1]
            klass = item.message_class
            direct = mode != 0 and ((mt == 2 and klass != 2) or (mt == 3 and klass == 3))
            if direct:
                sim.network_queue.popleft()
                self._urc(f"+CMT: ,{item.tpdu_length}\r\n{item.pdu.hex().upper()}")
                self.on_event("cmt", item)
                if self.settings.csms == 1:
                    timer = self.clock.call_later(self.cnma_timeout, self._ack_missed)
                    self._pending_ack = (item, timer)
                continue
            memory_name = "SM" if klass == 2 else self.settings.cpms[2]
            memory = self._memory(memory_name)
            slot = memory.store(item.pdu, REC_UNREAD)
            if slot is None and memory_name == "SM" and klass != 2 and self.profile.spill_to_me:
                memory_name, memory = "ME", self.me  # a class 2 SMS belongs on the SIM
                slot = memory.store(item.pdu, REC_UNREAD)
            if slot is None:
                if not self._memfull_said:
                    self._memfull_said = True
                    self.on_event("storage-full", item)
                    if self.profile.memfull_urc:
                        self._urc(self.profile.memfull_urc)
                return  # the network keeps it and tries again when a slot frees
            sim.network_queue.popleft()
            index = slot + self.profile.index_base
            self.on_event("stored", item, memory=memory_name, index=index)
            if mode != 0 and mt in (1, 2, 3):
                self._urc(f'+CMTI: "{memory_name}",{index}')

    def _cnma(self, form: str, args: list[str | int | None]) -> list[str]:
        if form == "=?":
            return ["+CNMA: (0-2)"]
        if self._pending_ack is None or self.settings.csms != 1:
            raise AtError("CMS", 340)
        item, timer = self._pending_ack
        timer.cancel()
        self._pending_ack = None
        self.on_event("acked", item)
        self._schedule_pump()
        return []

    def _ack_missed(self) -> None:
        """27.005 3.4.1: no ack in time -> the module sets <mt> and <ds> to 0 by itself."""
        mode, _mt, bm, _ds, bfr = self.settings.cnmi
        self.settings = replace(self.settings, cnmi=(mode, 0, bm, 0, bfr))
        self._requeue_unacked()
        self._schedule_pump(self.network_retry)

    def _requeue_unacked(self) -> None:
        if self._pending_ack is None:
            return
        item, timer = self._pending_ack
        timer.cancel()
        self._pending_ack = None
        if self.sim is not None:
            self.sim.network_queue.appendleft(item)
        self.on_event("unacked", item)

    # --------------------------------------------------------------------- faults

    def set_output_fault(self, kind: str, *, active: bool) -> None:
        """Switch hang / slow / garbage on or off."""
        if kind not in FAULTS_ON_OUTPUT:
            raise ValueError(f"not an output fault: {kind!r}")
        if active:
            self.faults.add(kind)
        else:
            self.faults.discard(kind)
            if kind == "hang":
                self._schedule_pump()

    def clear_faults(self) -> None:
        self.faults.clear()
        self._schedule_pump()

    def remove_sim(self) -> None:
        self._end_call("lost")
        self._requeue_unacked()
        self.sim = None
        self._urc("+CPIN: NOT INSERTED")
        self._announce_registration()

    def insert_sim(self, sim: SimCard) -> None:
        self.sim = sim
        for line in self.profile.sim_ready_urcs:
            self._urc(line)
        self._announce_registration()
        self._schedule_pump()

    def set_network(self, *, available: bool) -> None:
        self.network_ok = available
        if not available:
            self._end_call("lost")  # off the network, a ringing call drops
            self._requeue_unacked()
        self._announce_registration()
        self._schedule_pump()

    def fill_storage(self, pdus: list[bytes]) -> int:
        """Fill the receive storage (mem3) with read old messages; how many were stored."""
        memory = self._memory(self.settings.cpms[2])
        count = 0
        for data in pdus:
            if memory.store(data, REC_READ) is None:
                break
            count += 1
        return count

    # ---------------------------------------------------------------------- noise

    def noise(self) -> None:
        """One round of the module's unsolicited chatter; the hub calls it on a shared tick."""
        if not self.powered or "hang" in self.faults:
            return
        for spec in self.profile.ports:
            if spec.role == ROLE_NMEA:
                self._send(spec.interface, _nmea_burst(self.wall_clock()))
            elif spec.role == ROLE_DIAG and self.rng.random() < 0.3:
                frame = bytes(self.rng.randrange(256) for _ in range(self.rng.randint(8, 40)))
                self._send(spec.interface, frame.replace(b"\x7e", b"\x7d\x5e") + b"\x7e")
        if self.profile.curc_noise and self.settings.curc and self.synced:
            self.csq = max(5, min(31, self.csq + self.rng.choice((-1, 0, 1))))
            self._urc(f"^RSSI:{self.csq}")
            if self.rng.random() < 0.2:
                self._urc("^MODE:5,4")

    # ------------------------------------------------------------------- status

    def describe(self) -> dict[str, object]:
        """State for ``simedge emulate list``."""
        sim = self.sim
        stored = {"SM": sim.storage.used, "ME": self.me.used} if sim is not None else {}
        return {
            "profile": self.profile.name,
            "imei": self.imei,
            "powered": self.powered,
            "iccid": sim.iccid if sim else None,
            "imsi": sim.imsi if sim else None,
            "number": sim.msisdn if sim else None,
            "number_on_sim": sim.number_stored if sim else None,
            "operator": sim.operator.long_name if sim else None,
            "mcc_mnc": sim.operator.mcc_mnc if sim else None,
            "ussd_code": sim.operator.ussd_code if sim else None,
            "stored": stored,
            "in_network": len(sim.network_queue) if sim else 0,
            "cnmi": ",".join(map(str, self.settings.cnmi)),
            "csms": self.settings.csms,
            "registration": self.registration_status,
            "credit": sim.credit if sim else None,
            "sms_refusal": sim.sms_refusal if sim else None,
            "ringing": self._call.call_id if self._call else None,
            "faults": sorted(self.faults),
        }


# ------------------------------------------------------------------------ parsing


def _find_at(text: str) -> int:
    for marker in ("AT", "at"):
        position = text.find(marker)
        if position >= 0:
            return position
    return -1


def _split_commands(body: str) -> list[str]:
    """``E0V1+CMEE=1;+COPS?`` -> ["E0", "V1", "+CMEE=1", "+COPS?"] (27.007 5.1 syntax)."""
    commands: list[str] = []
    position, length = 0, len(body)
    while position < length:
        char = body[position]
        if char in "; ":
            position += 1
        elif char in "+^":
            end, quoted = position + 1, False
            while end < length and (quoted or body[end] != ";"):
                if body[end] == '"':
                    quoted = not quoted
                end += 1
            commands.append(body[position:end])
            position = end
        elif char == "&" or char.isalpha():
            end = position + (2 if char == "&" else 1)
            if char.upper() == "S":
                while end < length and (body[end].isdigit() or body[end] in "=?"):
                    end += 1
            while end < length and body[end].isdigit():
                end += 1
            commands.append(body[position:end].upper())
            position = end
        else:
            raise AtError("ERROR")
    return commands


def _parse_extended(command: str) -> tuple[str, str, list[str | int | None]]:
    """ "+CMGD=1,4" -> ("+CMGD", "=", [1, 4]); forms: "", "?", "=?", "="."""
    end = 1
    while end < len(command) and (command[end].isalnum() or command[end] in "_"):
        end += 1
    name, rest = command[:end].upper(), command[end:]
    if rest == "":
        return name, "", []
    if rest == "?":
        return name, "?", []
    if rest == "=?":
        return name, "=?", []
    if rest.startswith("="):
        return name, "=", _parse_args(rest[1:])
    raise AtError("ERROR")


def _parse_args(text: str) -> list[str | int | None]:
    args: list[str | int | None] = []
    current, quoted, was_quoted = "", False, False
    for char in text + ",":
        if char == '"':
            quoted, was_quoted = not quoted, True
        elif char == "," and not quoted:
            value = current.strip()
            if was_quoted:
                args.append(current)
            elif value == "":
                args.append(None)
            elif value.isdigit():
                args.append(int(value))
            else:
                raise AtError("CME", 50)
            current, was_quoted = "", False
        else:
            current += char
    if quoted:
        raise AtError("CME", 50)
    return args


def _range_text(values: frozenset[int]) -> str:
    ordered = sorted(values)
    if len(ordered) > 2 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"({ordered[0]}-{ordered[-1]})"
    return "(" + ",".join(map(str, ordered)) + ")"


def _nmea_checksum(sentence: str) -> str:
    value = 0
    for char in sentence:
        value ^= ord(char)
    return f"{value:02X}"


def _nmea_burst(now: datetime) -> bytes:
    """What a GNSS engine without a fix prints each second: sentences with empty fields."""
    stamp = f"{now:%H%M%S}.00"
    sentences = (
        f"GPGGA,{stamp},,,,,0,00,,,M,,M,,",
        f"GPRMC,{stamp},V,,,,,,,{now:%d%m%y},,,N",
        "GPGSV,1,1,00,,,,*",
        "GPVTG,,T,,M,,N,,K,N",
    )
    lines = []
    for body in sentences:
        body = body.rstrip("*")
        lines.append(f"${body}*{_nmea_checksum(body)}\r\n")
    return "".join(lines).encode()


__all__ = [
    "REC_READ",
    "REC_UNREAD",
    "AtError",
    "Clock",
    "ManualClock",
    "Modem",
    "Pending",
    "Settings",
]
