"""The modem hub: many emulated modems on pseudo-terminals, served by one asyncio loop.

Layout of the hub's folder (``--dir``)::

    DIR/platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.1.1:1.0-port0 -> /dev/pts/7
    DIR/...                       one symlink per tty, named like /dev/serial/by-path
    DIR/hub.json                  what sysfs would tell: USB path, VID:PID, interface, ...
    DIR/control.sock              the control socket (see ``control``)

The symlink names follow udev's ``/dev/serial/by-path``: the Pi 4's xHCI controller
(``platform-fd500000.pcie-pci-0000:01:00.0``), then ``usb-0:<port chain>:1.<interface>``
and ``-port0``. Modem ``k`` sits at port chain ``a.b.c`` of a tree of 7-port hubs (pool
boards: ``a.b`` is the board, ``c`` the module), so the name survives unplug/replug just as
by-path does, while the pty behind it changes. ``hub.json`` adds what a pty cannot carry:
each modem's USB path, VID:PID, USB serial (none on these modules), driver and interface
numbers, plus the profile and IMEI for test tooling. Discovery must still probe which
interface speaks AT.

Idle cost: the master side of each pty is watched with ``loop.add_reader``; nothing runs
while nobody writes. The only timer is one shared noise tick (EC25 DIAG/NMEA ports,
Huawei ``^RSSI``), present only when some profile makes noise.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import resource
import time
import tty
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from agent.emulate.modems.control import INJECT_OPTIONS, ControlServer
from agent.emulate.modems.modem import Modem, Pending, Submitted
from agent.emulate.modems.profiles import MIXED_CHOICES, PROFILE_NAMES, PROFILES, PortSpec, Profile
from agent.emulate.modems.sim import SimCard, luhn_digit, make_sim
from agent.errors import EmulatorError
from agent.protocol.pdu import encode_deliver

CONTROLLER = "platform-fd500000.pcie-pci-0000:01:00.0"
BACKLOG_LIMIT = 65536  # bytes a port holds for a reader that does not read; then dropped
FAULT_KINDS = (
    "hang",
    "slow",
    "garbage",
    "clear",
    "reboot",
    "unplug",
    "replug",
    "sim-out",
    "sim-in",
    "storage-full",
    "deregister",
    "reregister",
)
EVENT_LOG_LIMIT = 200_000
# Injections one inject_many request may carry: a burst on every modem of the largest hub
# (docs/bounds.md); a control line holds at most 1 MiB anyway.
INJECT_BATCH_LIMIT = 1024


class PtyPort:
    """One pseudo-terminal standing in for one USB tty, behind a stable symlink."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        link: Path,
        spec: PortSpec,
        usb_interface: int | None = None,
    ) -> None:
        self.loop = loop
        self.link = link
        self.spec = spec  # the module's own view: which of its ports this is
        # The USB interface the host sees (a module on a multi-UART chip: its UART's).
        self.usb_interface = spec.interface if usb_interface is None else usb_interface
        self.master: int | None = None
        self.slave: int | None = None
        self.tty: str | None = None
        self.backlog = bytearray()
        self.on_input = _ignore_input

    def open(self) -> None:
        master, slave = os.openpty()
        # Raw: no echo and no CR/LF translation by the tty layer; the modem echoes itself.
        tty.setraw(slave)
        os.set_blocking(master, False)
        self.master, self.slave = master, slave
        self.tty = os.ttyname(slave)
        staging = self.link.with_name(self.link.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()
        staging.symlink_to(self.tty)
        os.replace(staging, self.link)  # the link never disappears on replug
        self.loop.add_reader(master, self._readable)

    def close(self) -> None:
        """Unplug: the pty goes away (an open reader sees EOF/EIO) and so does the link."""
        if self.master is not None:
            self.loop.remove_reader(self.master)
            self.loop.remove_writer(self.master)
            os.close(self.master)
        if self.slave is not None:
            # The hub keeps the slave open so the master never reads EIO when no host has
            # the port open; it goes with the unplug.
            os.close(self.slave)
        self.master = self.slave = self.tty = None
        self.backlog.clear()
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()

    def _readable(self) -> None:
        if self.master is None:
            return
        try:
            data = os.read(self.master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        if data:
            self.on_input(data)

    def write(self, data: bytes) -> None:
        if self.master is None:
            return
        if self.backlog:
            self._queue(data)
            return
        try:
            written = os.write(self.master, data)
        except BlockingIOError:
            written = 0
        except OSError:
            return
        if written < len(data):
            self._queue(data[written:])
            self.loop.add_writer(self.master, self._drain)

    def _queue(self, data: bytes) -> None:
        room = BACKLOG_LIMIT - len(self.backlog)
        self.backlog += data[: max(room, 0)]  # a UART overrun: the rest is lost

    def _drain(self) -> None:
        if self.master is None:
            return
        try:
            written = os.write(self.master, self.backlog)
        except BlockingIOError:
            return
        except OSError:
            written = len(self.backlog)
        del self.backlog[:written]
        if not self.backlog:
            self.loop.remove_writer(self.master)


def _ignore_input(_data: bytes) -> None:
    """Input to a port whose modem is gone."""


@dataclass
class Slot:
    """A physical place on the USB tree with the modem that sits in it."""

    index: int
    usb_path: str  # sysfs-style device name, e.g. "1-1.2.3"
    modem: Modem
    ports: list[PtyPort]
    rng: random.Random
    plugged: bool = False
    reference: int = 0
    links: list[str] = field(default_factory=list)

    @property
    def profile(self) -> Profile:
        return self.modem.profile


@dataclass(frozen=True)
class _Delivery:
    """One SMS of an injection, encoded, waiting to be handed to its modem."""

    sms_id: str
    slot: Slot
    items: list[Pending]
    delay: float  # seconds after the injection (``rate``), 0 for at once


class Hub:
    """Emulated modems on ptys with a control socket; see the module docstring.

    Timing knobs are for tests: ``cnma_timeout`` (how long a ``+CMT`` waits for
    ``+CNMA``), ``network_retry`` (when the network retries an unacknowledged SMS),
    ``noise_interval`` (the shared noise tick; 0 turns noise off), ``slow_delay``,
    ``sms_delay`` (how long an SMS one SIM sends to another SIM of the hub takes to
    arrive: a few seconds between real SIMs), ``ring_interval`` (between two RINGs).
    ``hidden_numbers``: the first that many SIMs neither store their number nor get it
    told by USSD (their number can be found only by an SMS they send).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        count: int,
        profile: str = "sim800",
        seed: int = 0,
        *,
        noise_interval: float = 2.0,
        cnma_timeout: float = 5.0,
        network_retry: float = 2.0,
        ussd_delay: float = 0.3,
        slow_delay: float = 3.0,
        reset_delay: float = 0.2,
        sms_delay: float = 3.0,
        ring_interval: float = 3.0,
        hidden_numbers: int = 0,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if profile not in PROFILE_NAMES:
            raise EmulatorError(
                f"unknown profile: choose from {', '.join(PROFILE_NAMES)}", "profile", profile
            )
        if count < 1:
            raise EmulatorError("must be at least 1", "count", count)
        if not 0 <= hidden_numbers <= count:
            raise EmulatorError(f"expected 0 to {count}", "hidden_numbers", hidden_numbers)
        self.hidden_numbers = hidden_numbers
        self.directory = Path(directory)
        self.count = count
        self.profile_name = profile
        self.seed = seed
        self.noise_interval = noise_interval
        self.timing = {
            "cnma_timeout": cnma_timeout,
            "network_retry": network_retry,
            "ussd_delay": ussd_delay,
            "slow_delay": slow_delay,
            "reset_delay": reset_delay,
            "ring_interval": ring_interval,
        }
        self.sms_delay = sms_delay
        # The modems' date and time (+CCLK, SCTS, a SIM's lapse): tests move it by days.
        self.wall_clock = wall_clock
        self.slots: list[Slot] = []
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENT_LOG_LIMIT)
        self._event_seq = itertools.count()
        self._sms_ids = itertools.count(1)
        self._call_ids = itertools.count(1)
        self._rng = random.Random(f"{seed}:hub")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._control: ControlServer | None = None
        self._tick: asyncio.TimerHandle | None = None

    @property
    def control_path(self) -> Path:
        return self.directory / "control.sock"

    @property
    def description_path(self) -> Path:
        return self.directory / "hub.json"

    # ---------------------------------------------------------------- life cycle

    async def start(self) -> None:
        """Create every modem and pty, write hub.json, open the control socket."""
        self._loop = asyncio.get_running_loop()
        self.directory.mkdir(parents=True, exist_ok=True)
        ports = sum(len(self._profile_of(index).ports) for index in range(self.count))
        _raise_fd_limit(2 * ports + 64)
        for index in range(self.count):
            self.slots.append(self._make_slot(index))
        try:
            for slot in self.slots:
                self._plug(slot)
            self._write_description()
            self._control = ControlServer(self, self.control_path)
            await self._control.start()
        except BaseException:
            self._control = None
            await self.stop()  # no ptys or links left behind by a failed start
            raise
        if self.noise_interval > 0 and any(self._noisy(slot.profile) for slot in self.slots):
            self._tick = self._loop.call_later(self.noise_interval, self._noise_tick)

    async def stop(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
        if self._control is not None:
            await self._control.close()
        for slot in self.slots:
            self._unplug(slot)
        with contextlib.suppress(FileNotFoundError):
            self.description_path.unlink()

    async def __aenter__(self) -> Hub:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    def _make_slot(self, index: int) -> Slot:
        assert self._loop is not None
        rng = random.Random(f"{self.seed}:modem:{index}")
        profile = self._profile_of(index)
        uart = 0  # the module's UART on a multi-UART chip, which is its USB interface
        if profile.uart_board:
            board, uart = divmod(index, profile.uart_board)
            chain = f"{board // 49 + 1}.{board // 7 % 7 + 1}.{board % 7 + 1}"
            imei = _imei(rng, profile)
        elif profile.board_size:
            board, position = divmod(index, profile.board_size)
            chain = f"{board // 7 + 1}.{board % 7 + 1}.{position + 1}"
            imei = _imei(random.Random(f"{self.seed}:board:{board}"), profile)
        else:
            chain = f"{index // 49 + 1}.{index // 7 % 7 + 1}.{index % 7 + 1}"
            imei = _imei(rng, profile)
        sim = make_sim(rng)
        if index < self.hidden_numbers:
            sim.number_stored = sim.ussd_tells_number = False
        modem = Modem(
            profile,
            sim,
            imei,
            self._loop,
            rng,
            boot_id=rng.randrange(10**8),
            wall_clock=self.wall_clock,
            **self.timing,
        )
        slot = Slot(
            index=index,
            usb_path=f"1-{chain}",
            modem=modem,
            ports=[],
            rng=rng,
            reference=rng.randrange(256),
        )
        modem.on_event = lambda kind, item, **details: self._record(slot, kind, item, details)
        modem.on_submit = lambda submitted: self._route(slot, submitted)
        modem.on_call = lambda kind, call_id, **details: self._log(
            slot, f"call-{kind}", call_id=call_id, **details
        )
        for spec in profile.ports:
            interface = spec.interface + uart
            link = self.directory / f"{CONTROLLER}-usb-0:{chain}:1.{interface}-port0"
            slot.ports.append(PtyPort(self._loop, link, spec, interface))
            slot.links.append(str(link))
        return slot

    def _profile_of(self, index: int) -> Profile:
        name = self.profile_name
        if name == "mixed":
            name = random.Random(f"{self.seed}:profile:{index}").choice(MIXED_CHOICES)
        return PROFILES[name]

    @staticmethod
    def _noisy(profile: Profile) -> bool:
        return profile.curc_noise or any(spec.role != "at" for spec in profile.ports)

    def _plug(self, slot: Slot) -> None:
        for port in slot.ports:
            port.open()
            interface = port.spec.interface
            slot.modem.attach(interface, port.write)
            port.on_input = lambda data, i=interface: slot.modem.feed(i, data)
        slot.plugged = True
        slot.modem.power_on()

    def _unplug(self, slot: Slot) -> None:
        slot.modem.power_off()
        for port in slot.ports:
            port.close()
        slot.plugged = False

    def _noise_tick(self) -> None:
        assert self._loop is not None
        for slot in self.slots:
            if slot.plugged and self._noisy(slot.profile):
                slot.modem.noise()
        self._tick = self._loop.call_later(self.noise_interval, self._noise_tick)

    # -------------------------------------------------------------- description

    def description(self) -> dict[str, Any]:
        """hub.json: the USB facts a pty lacks, per modem and port."""
        modems = []
        for slot in self.slots:
            profile = slot.profile
            modems.append(
                {
                    "index": slot.index,
                    "slot": slot.usb_path,
                    "profile": profile.name,
                    "imei": slot.modem.imei,
                    "plugged": slot.plugged,
                    "usb": {
                        "path": slot.usb_path,
                        "vid": profile.vid,
                        "pid": profile.pid,
                        "serial": None,
                        "manufacturer": profile.usb_manufacturer,
                        "product": profile.usb_product,
                    },
                    "ports": [
                        {
                            "link": str(port.link),
                            "tty": port.tty,
                            "interface": port.usb_interface,
                            "driver": profile.driver,
                            "present": port.master is not None,
                        }
                        for port in slot.ports
                    ],
                }
            )
        return {"version": 1, "control": str(self.control_path), "modems": modems}

    def _write_description(self) -> None:
        staging = self.description_path.with_suffix(".json.new")
        staging.write_text(json.dumps(self.description(), indent=2) + "\n")
        os.replace(staging, self.description_path)

    def describe(self) -> list[dict[str, Any]]:
        """Each modem's state, for ``simedge emulate list``."""
        out = []
        for slot in self.slots:
            state = slot.modem.describe()
            state.update(
                index=slot.index,
                slot=slot.usb_path,
                plugged=slot.plugged,
                ports=[str(port.link) for port in slot.ports],
            )
            out.append(state)
        return out

    def slot(self, key: int | str) -> Slot:
        """A modem by index, slot name (USB path) or port symlink (name or path)."""
        if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
            index = int(key)
            if 0 <= index < len(self.slots):
                return self.slots[index]
            raise EmulatorError(
                f"no such modem: the hub has 0..{len(self.slots) - 1}", "modem", key
            )
        for slot in self.slots:
            if key == slot.usb_path or any(key in (link, Path(link).name) for link in slot.links):
                return slot
        raise EmulatorError("no modem with this index, slot or port", "modem", key)

    # ------------------------------------------------------------------- events

    def _record(self, slot: Slot, kind: str, item: Pending, details: dict[str, Any]) -> None:
        self._log(slot, kind, sms_id=item.sms_id, part=item.part, **details)

    def _log(self, slot: Slot, kind: str, **details: Any) -> None:
        self.events.append(
            {
                "seq": next(self._event_seq),
                "t": time.monotonic(),
                "kind": kind,
                "modem": slot.index,
                **details,
            }
        )

    def events_since(self, since: int = 0) -> list[dict[str, Any]]:
        return [event for event in self.events if event["seq"] >= since]

    # ------------------------------------------------------------------- inject

    def inject(self, key: int | str, sender: str, text: str, **options: Any) -> list[str]:
        """Have the network deliver SMS to a modem; the SMS ids, one per message.
        ``options``: those of :meth:`_prepare` (``count``, ``rate``, ``drop_part``, ...)."""
        deliveries = self._prepare(key, sender, text, **options)
        self._send(deliveries)
        return [delivery.sms_id for delivery in deliveries]

    def inject_many(self, requests: list[dict[str, Any]]) -> list[list[str]]:
        """Several :meth:`inject` calls at one moment (a burst over many modems): each
        request is ``{"modem", "sender", "text"}`` plus :meth:`inject`'s options; the ids,
        one list per request.

        Every request is checked and encoded before any is handed over, so one bad request
        refuses the whole batch (naming it) and nothing reaches a modem. Then all are
        handed over in one go, without giving the event loop a turn: their ``injected``
        stamps lie within the time the hand-overs themselves take, and no modem prints a
        ``+CMTI`` before the last SMS of the batch is with its modem.
        """
        if not isinstance(requests, list) or not 1 <= len(requests) <= INJECT_BATCH_LIMIT:
            size = len(requests) if isinstance(requests, list) else type(requests).__name__
            raise EmulatorError(
                f"expected a list of 1 to {INJECT_BATCH_LIMIT} injections", "messages", size
            )
        prepared: list[list[_Delivery]] = []
        for number, request in enumerate(requests):
            where = f"messages[{number}]"
            if not isinstance(request, dict):
                raise EmulatorError("expected an object", where, request)
            missing = [name for name in ("modem", "sender", "text") if name not in request]
            unknown = sorted(set(request) - {"modem", "sender", "text", *INJECT_OPTIONS})
            if missing or unknown:
                raise EmulatorError(f"missing {missing}, unknown {unknown}", where, sorted(request))
            options = {name: request[name] for name in INJECT_OPTIONS if name in request}
            try:
                prepared.append(
                    self._prepare(
                        request["modem"], str(request["sender"]), str(request["text"]), **options
                    )
                )
            except (EmulatorError, TypeError) as exc:
                raise EmulatorError(str(exc), where, request) from exc
        for deliveries in prepared:
            self._send(deliveries)
        return [[delivery.sms_id for delivery in deliveries] for deliveries in prepared]

    def _prepare(
        self,
        key: int | str,
        sender: str,
        text: str,
        *,
        shuffle_parts: bool = False,
        drop_part: int | None = None,
        duplicate_part: int | None = None,
        message_class: int | None = None,
        tz_quarters: int | None = None,
        ref16: bool = False,
        count: int = 1,
        rate: float | None = None,
    ) -> list[_Delivery]:
        """The PDUs of an injection, encoded and checked, not yet handed over.

        ``text`` may contain ``{n}`` (the message's number, from 1) for ``count`` > 1;
        ``rate`` spaces the messages (per second), else all go at once.
        """
        slot = self.slot(key)
        if slot.modem.sim is None:
            raise EmulatorError(
                f"modem {slot.index} has no SIM: the network cannot reach it", "modem", key
            )
        if count < 1 or (rate is not None and rate <= 0):
            raise EmulatorError("count must be >= 1 and rate > 0", "count/rate", (count, rate))
        quarters = slot.modem.sim.operator.tz_quarters if tz_quarters is None else tz_quarters
        if not -48 <= quarters <= 56:
            raise EmulatorError("quarter hours outside -48..+56", "tz", quarters)
        zone = timezone(timedelta(minutes=15 * quarters))
        deliveries = []
        for number in range(count):
            sms_id = f"sms-{next(self._sms_ids):06d}"
            delay = number / rate if rate else 0.0
            stamp = (datetime.now(UTC) + timedelta(seconds=delay)).astimezone(zone)
            bits = 16 if ref16 else 8
            slot.reference = (slot.reference + 1) % (1 << bits)
            try:
                pdus = encode_deliver(
                    text.replace("{n}", str(number + 1)),
                    sender,
                    timestamp=stamp.replace(microsecond=0),
                    smsc=slot.modem.sim.smsc,
                    reference=slot.reference,
                    ref_bits=bits,
                    message_class=message_class,
                )
            except ValueError as exc:
                raise EmulatorError(str(exc), "inject", {"sender": sender, "text": text}) from exc
            items = [
                Pending(sms_id, part, data, message_class) for part, data in enumerate(pdus, 1)
            ]
            items = self._mangle(items, shuffle_parts, drop_part, duplicate_part)
            deliveries.append(_Delivery(sms_id, slot, items, delay))
        return deliveries

    def _send(self, deliveries: list[_Delivery]) -> None:
        assert self._loop is not None
        for delivery in deliveries:
            if delivery.delay:
                self._loop.call_later(
                    delivery.delay, self._hand_over, delivery.slot, delivery.items
                )
            else:
                self._hand_over(delivery.slot, delivery.items)

    def _mangle(
        self, items: list[Pending], shuffle: bool, drop: int | None, duplicate: int | None
    ) -> list[Pending]:
        for name, part in (("drop_part", drop), ("duplicate_part", duplicate)):
            if part is not None and not 1 <= part <= len(items):
                raise EmulatorError(f"the message has parts 1..{len(items)}", name, part)
        if duplicate is not None:
            items = [*items[:duplicate], items[duplicate - 1], *items[duplicate:]]
        if drop is not None:
            items = [item for item in items if item.part != drop]
        if shuffle:
            self._rng.shuffle(items)
        return items

    def _hand_over(self, slot: Slot, items: list[Pending]) -> None:
        for item in items:
            self._record(slot, "injected", item, {})
        if slot.modem.sim is not None:
            slot.modem.deliver(items)

    # ------------------------------------------------- SMS between SIMs, calls, SIMs

    def _route(self, sender: Slot, submitted: Submitted) -> None:
        """An SMS a SIM of the hub sent: to a SIM of the hub whose number it is addressed
        to, after ``sms_delay``, as the network would; anywhere else it leaves the hub."""
        assert self._loop is not None
        assert sender.modem.sim is not None
        sender_number = sender.modem.sim.msisdn
        target = next(
            (
                slot
                for slot in self.slots
                if slot.modem.sim is not None and slot.modem.sim.msisdn == submitted.recipient
            ),
            None,
        )
        sms_id = f"sms-{next(self._sms_ids):06d}"
        self._log(
            sender,
            "submitted",
            sms_id=sms_id,
            recipient=submitted.recipient,
            reference=submitted.reference,
            to_modem=target.index if target is not None else None,
        )
        if target is not None:
            self._loop.call_later(
                self.sms_delay, self._arrive, target, sms_id, sender_number, submitted.text
            )

    def _arrive(self, target: Slot, sms_id: str, sender: str, text: str) -> None:
        sim = target.modem.sim
        if sim is None:
            return  # the SIM was taken out meanwhile: the network would hold it; we drop it
        zone = timezone(timedelta(minutes=15 * sim.operator.tz_quarters))
        stamp = datetime.now(UTC).astimezone(zone).replace(microsecond=0)
        pdus = encode_deliver(text, sender, timestamp=stamp, smsc=sim.smsc)
        self._hand_over(
            target, [Pending(sms_id, part, data, None) for part, data in enumerate(pdus, 1)]
        )

    def call(self, key: int | str, caller: str, *, give_up_after: float = 30.0) -> str:
        """Ring a modem from ``caller`` until it rejects the call or ``give_up_after``
        seconds pass; the call's id."""
        slot = self.slot(key)
        if not caller or len(caller) > 32 or not caller.lstrip("+").isdigit():
            raise EmulatorError("expected a phone number (digits, an optional +)", "caller", caller)
        if not 0 < give_up_after <= 600:
            raise EmulatorError(
                "expected more than 0 and at most 600 s", "give_up_after", give_up_after
            )
        call_id = f"call-{next(self._call_ids):06d}"
        try:
            slot.modem.incoming_call(call_id, caller, give_up_after=give_up_after)
        except ValueError as exc:
            raise EmulatorError(str(exc), "modem", key) from exc
        return call_id

    def set_sim(
        self,
        key: int | str,
        *,
        credit: bool | None = None,
        service: bool | None = None,
        refusal: int | None = None,
        clear_refusal: bool = False,
    ) -> None:
        """Change what a SIM's network allows: ``credit`` (without it every send fails
        with +CMS ERROR 21), ``service`` (registered or not), ``refusal`` (every send
        fails with this +CMS ERROR code until ``clear_refusal``)."""
        slot = self.slot(key)
        sim = slot.modem.sim
        if sim is None:
            raise EmulatorError(f"modem {slot.index} has no SIM", "modem", key)
        if refusal is not None and not 0 <= refusal <= 511:
            raise EmulatorError("expected a +CMS ERROR code, 0..511", "refusal", refusal)
        if credit is not None:
            sim.credit = credit
        if refusal is not None or clear_refusal:
            sim.sms_refusal = refusal
        if service is not None:
            slot.modem.set_network(available=service)

    # ------------------------------------------------------------------- faults

    def fault(self, key: int | str, kind: str, *, seconds: float | None = None) -> None:
        """Make a modem misbehave; see FAULT_KINDS and the CLI help."""
        slot = self.slot(key)
        modem = slot.modem
        if kind in ("hang", "slow", "garbage"):
            if kind == "slow" and seconds is not None:
                modem.slow_delay = seconds
            modem.set_output_fault(kind, active=True)
        elif kind == "clear":
            modem.clear_faults()
        elif kind == "reboot":
            modem.reboot()
        elif kind == "unplug":
            if slot.plugged:
                self._unplug(slot)
                self._write_description()
        elif kind == "replug":
            if slot.plugged:
                self._unplug(slot)
            self._plug(slot)
            self._write_description()
        elif kind == "sim-out":
            modem.remove_sim()
        elif kind == "sim-in":
            if modem.sim is not None:
                modem.remove_sim()
            modem.insert_sim(make_sim(slot.rng))
        elif kind == "storage-full":
            self._fill_storage(slot)
        elif kind in ("deregister", "reregister"):
            modem.set_network(available=kind == "reregister")
        else:
            raise EmulatorError(
                f"unknown fault: choose from {', '.join(FAULT_KINDS)}", "kind", kind
            )

    def _fill_storage(self, slot: Slot) -> None:
        sim: SimCard | None = slot.modem.sim
        if sim is None:
            raise EmulatorError(f"modem {slot.index} has no SIM to fill", "modem", slot.index)
        capacity = sim.storage.capacity + slot.modem.me.capacity
        zone = timezone(timedelta(minutes=15 * sim.operator.tz_quarters))
        old = datetime.now(UTC).astimezone(zone).replace(microsecond=0) - timedelta(days=3)
        pdus = [
            encode_deliver(
                f"Balance: {slot.rng.randint(10, 900)}.{n % 100:02d}",
                "Balance",
                timestamp=old + timedelta(minutes=n),
                smsc=sim.smsc,
            )[0]
            for n in range(capacity)
        ]
        slot.modem.fill_storage(pdus)


def _raise_fd_limit(needed: int) -> None:
    """Each pty holds two descriptors in the hub: 128 EC25s need more than the usual 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _imei(rng: random.Random, profile: Profile) -> str:
    body = rng.choice(profile.tacs) + "".join(rng.choice("0123456789") for _ in range(6))
    return body + luhn_digit(body)


__all__ = ["FAULT_KINDS", "Hub", "PtyPort", "Slot"]
