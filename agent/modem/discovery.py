"""Finding the modems: serial ports, which of them speak AT, which belong together, slots.

One discovery pass, in four steps:

1. **Enumerate** (:func:`enumerate_ports`): USB serial ports from pyserial's
   ``comports()`` (sysfs: VID:PID, interface, location), plus the configured globs. Each
   port is described by its ``/dev/serial/by-path`` name where it has one: a glob match
   whose own name is by-path style (the emulator's links are) is parsed directly; a tty
   is looked up among the by-path links that resolve to it. Ports are deduplicated by the
   device node they resolve to.
2. **Classify by table** (the vendor profiles' USB devices, :mod:`agent.modem.vendors`):
   a VID:PID whose interface layout is documented names its AT, DIAG, NMEA and audio
   interfaces; those ports are not probed.
3. **Group** (:func:`group_ports`): ports of one USB device (same by-path parent: the
   port chain of the device) form one modem, because modem pools give every module the
   same IMEI. USB-serial bridges (CH340, CP210x, FTDI in the table) are the exception:
   each UART of a multi-port bridge may carry its own module, so each is a group of its
   own; so is each UART of a device that shows several on one interface (``-port1``...),
   a multi-UART chip the table does not know. After probing, :func:`split_by_identity`
   asks each AT port of a group its IMEI: AT ports that name different IMEIs are
   different modems behind one USB device (a multi-UART chip whose UARTs look like the
   interfaces of one modem), and each becomes a group of its own.
4. **Probe** the rest (:func:`probe_port`, :func:`probe_groups`): all at once (bounded),
   ``AT`` up to three times with a short timeout each (an autobauding SIM800 ignores the
   first), then classified by what came back: an answer (AT), NMEA sentences (a GPS
   port), binary frames (a DIAG port), or nothing (silent).

A group's **slot** is a short name taken from its physical USB path (``1.2.3`` for
``usb-0:1.2.3``), so it survives re-enumeration and replugging into the same socket; a
label from ``[site] slot_labels`` is shown with it. A modem moved to another socket is
the same modem (IMEI) in a new slot: identity lives above this module.

:func:`scan` runs the whole pass for ``simedge scan`` and identifies every modem with
:mod:`agent.modem.startup` and :mod:`agent.modem.own_number`, as the worker does. The agent
itself uses :class:`agent.modem.hotplug.PortWatcher` and :func:`probe_group` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import re
import stat
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from agent.errors import AtParseError, CommandFailed, CommandTimeout, PortBusy, PortGone
from agent.logs import get_logger
from agent.modem.ussd import QueuedAnswers
from agent.modem.vendors import ROLE_AT, ROLE_AUDIO, ROLE_DIAG, ROLE_NMEA, known_device
from agent.protocol import commands
from agent.protocol.urc import UssdReceived
from agent.status import ModemState, ModemStatus, NumberSource, PortInfo, ScanResult
from agent.usbpath import UsbPath, label_index, parse_by_path, parse_sysfs_location

if TYPE_CHECKING:
    from agent.modem.own_number import NumberBook, UssdRecipe
    from agent.modem.session import AtSession

log = get_logger("modem.discovery")

BY_PATH_DIR = Path("/dev/serial/by-path")

ROLE_SILENT = "silent"
ROLE_GONE = "gone"
ROLE_BUSY = "busy"  # another program holds the port: skipped (and asked again), not failed
ROLE_UNKNOWN = "unknown"  # not classified yet: to be probed
IGNORED_ROLES = frozenset({ROLE_DIAG, ROLE_NMEA, ROLE_AUDIO, ROLE_SILENT, ROLE_GONE, ROLE_BUSY})

PROBE_ATTEMPTS = 3
PROBE_TIMEOUT = 0.5  # per AT; a modem answers in milliseconds, a booting one may not
PROBE_CONCURRENCY = 128


# ----------------------------------------------------------------------- the table


def classify_by_table(port: PortInfo) -> PortInfo:
    """``port`` with the role its VID:PID and interface give, or unchanged (to probe)."""
    known = known_device(port.vid_pid)
    if known is None or port.interface is None:
        return port
    _, device = known
    role = device.roles.get(port.interface)
    if role is None:
        return port
    where = f"{device.name} ({port.vid_pid}) interface {port.interface}"
    reasons = {
        ROLE_AT: f"AT port of {where}",
        ROLE_DIAG: f"DIAG port of {where} (binary, not AT)",
        ROLE_NMEA: f"GPS/NMEA port of {where}",
        ROLE_AUDIO: f"audio port of {where}",
    }
    return replace(port, role=role, why=reasons[role])


# --------------------------------------------------------------------- enumeration


def _char_device(path: str) -> str | None:
    """The device node ``path`` resolves to, or None if it is not a character device."""
    real = os.path.realpath(path)
    try:
        mode = os.stat(real).st_mode
    except OSError:
        return None
    return real if stat.S_ISCHR(mode) else None


def _by_path_links(directory: Path) -> dict[str, str]:
    """Device node -> by-path link, for every link in ``directory``."""
    links: dict[str, str] = {}
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return links
    for entry in entries:
        real = _char_device(entry.path)
        if real is not None and parse_by_path(entry.name) is not None:
            links.setdefault(real, entry.path)
    return links


def _usb_comports() -> list[PortInfo]:
    """USB serial ports sysfs knows (pyserial). Non-USB ttys (a Pi's UART with its serial
    console) are never probed unless a configured glob names them."""
    from serial.tools import list_ports  # sysfs walking: only when discovering

    ports = []
    for info in list_ports.comports():
        if info.vid is None:
            continue
        location = parse_sysfs_location(info.location or "")
        ports.append(
            PortInfo(
                device=os.path.realpath(info.device),
                usb_parent=location.parent if location else None,
                interface=location.interface if location else None,
                vid_pid=f"{info.vid:04x}:{info.pid:04x}",
            )
        )
    return ports


def enumerate_ports(
    globs: Sequence[str] = (),
    *,
    auto: bool = True,
    by_path_dir: Path = BY_PATH_DIR,
) -> list[PortInfo]:
    """Every candidate serial port, once each, described as far as the system tells.

    ``auto`` adds the USB serial ports pyserial finds in sysfs; ``globs`` add whatever
    they match that resolves to a character device (so ``DIR/*`` skips a hub's sockets
    and files). ``device`` is the resolved device node; ``by_path`` the by-path link.
    """
    links = _by_path_links(by_path_dir)
    found: dict[str, PortInfo] = {}
    if auto:
        for port in _usb_comports():
            found[port.device] = _with_by_path(port, links.get(port.device))
    for pattern in globs:
        for match in sorted(glob.glob(os.path.expanduser(pattern))):
            real = _char_device(match)
            if real is None:
                continue
            link = match if parse_by_path(match) is not None else links.get(real)
            known = found.get(real)
            if known is not None:
                if known.by_path is None and link is not None:
                    found[real] = _with_by_path(known, link)
                continue
            found[real] = _with_by_path(PortInfo(device=real), link)
    return sorted(found.values(), key=_port_order)


def _with_by_path(port: PortInfo, link: str | None) -> PortInfo:
    usb = parse_by_path(link) if link else None
    if usb is None:
        return port
    return replace(port, by_path=link, usb_parent=usb.parent, interface=usb.interface)


def _port_order(port: PortInfo) -> tuple[str, int, str]:
    return (
        port.usb_parent or port.device,
        -1 if port.interface is None else port.interface,
        port.device,
    )


# ------------------------------------------------------------------------ grouping


@dataclass(frozen=True)
class PortGroup:
    """The ttys of one physical modem (one USB device, or one bridge UART)."""

    key: str  # stable identity of the place: USB parent (+ UART for bridges) or device
    slot: str
    label: str | None
    ports: tuple[PortInfo, ...]

    @property
    def at_ports(self) -> tuple[PortInfo, ...]:
        return tuple(p for p in self.ports if p.role == ROLE_AT)

    @property
    def at_port(self) -> PortInfo | None:
        """The AT port to use: the one the table names for URCs (Huawei's PCUI), else the
        lowest interface (the one URCs go to on Quectel and SIMCom modules)."""
        ports = self.at_ports
        for port in ports:
            known = known_device(port.vid_pid)
            if known is not None and known[1].urc_interface == port.interface:
                return port
        return ports[0] if ports else None

    @property
    def ignored(self) -> tuple[PortInfo, ...]:
        return tuple(p for p in self.ports if p.role in IGNORED_ROLES)


def _group_place(port: PortInfo, multi_uart: frozenset[str] = frozenset()) -> tuple[str, str]:
    """(key, slot) of the group ``port`` belongs to; ``multi_uart``: USB parents that show
    several UARTs on one interface."""
    usb = parse_by_path(port.by_path) if port.by_path else None
    if usb is None and port.usb_parent is not None:
        # Known to sysfs but without a by-path link: the parent is "usb<bus>-usb-0:<chain>".
        controller, _, chain = port.usb_parent.partition("-usb-0:")
        usb = UsbPath(controller, chain, port.interface or 0)
    if usb is None:
        return port.device, os.path.basename(port.device)
    known = known_device(port.vid_pid)
    if (known is not None and known[1].bridge) or usb.parent in multi_uart:
        return usb.uart_key, usb.uart_slot
    return usb.parent, usb.slot


def _multi_uart_parents(ports: Iterable[PortInfo]) -> frozenset[str]:
    """USB devices with a UART beyond the first on some interface (by-path ``-port1``):
    a multi-UART chip, whatever the table says, since a modem's ports are interfaces."""
    return frozenset(
        usb.parent
        for port in ports
        if port.by_path and (usb := parse_by_path(port.by_path)) is not None and usb.port > 0
    )


def slot_label(key: str, slot: str, index: Mapping[str, str]) -> str | None:
    """The configured label of a group, from :func:`agent.usbpath.label_index`: by its USB
    path (the documented by-path name) first, then by its short slot name."""
    return index.get(key) or index.get(slot)


def group_ports(
    ports: Iterable[PortInfo], labels: Mapping[str, str] | None = None
) -> list[PortGroup]:
    """Ports -> physical modems, by USB parent (never by IMEI: pools share IMEIs)."""
    index = label_index(labels or {})
    ports = list(ports)
    multi_uart = _multi_uart_parents(ports)
    members: dict[str, list[PortInfo]] = {}
    slots: dict[str, str] = {}
    for port in ports:
        key, slot = _group_place(port, multi_uart)
        members.setdefault(key, []).append(port)
        slots[key] = slot
    groups = [
        PortGroup(
            key=key,
            slot=slots[key],
            label=slot_label(key, slots[key], index),
            ports=tuple(sorted(found, key=_port_order)),
        )
        for key, found in members.items()
    ]
    return sorted(groups, key=lambda g: _natural(g.slot))


def _natural(text: str) -> list[int | str]:
    """Sort key: ``1.2.10`` after ``1.2.9``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


# ------------------------------------------------------------------------- probing


async def probe_port(
    port: PortInfo,
    *,
    baudrate: int = 115200,
    attempts: int = PROBE_ATTEMPTS,
    answer_within: float = PROBE_TIMEOUT,
) -> PortInfo:
    """Find out what ``port`` is by talking to it: ``port`` with role and why.

    ``AT`` up to ``attempts`` times, ``answer_within`` seconds each: an autobauding module
    learns the rate from the first and answers a later one. An ERROR is an answer too.
    Without an answer, what the port sent decides: NMEA sentences, binary frames, or
    nothing at all. Never waits longer than ``attempts * answer_within`` plus the open.
    """
    from agent.modem.session import AtSession  # the serial stack: only when probing

    try:
        # Every AT of a probe waits only answer_within: a silent port must not hold the
        # scan for a full command timeout per attempt.
        session = await AtSession.open(
            port.device, baudrate=baudrate, name=port.device, command_timeout=answer_within
        )
    except PortBusy as exc:
        return replace(port, role=ROLE_BUSY, why=f"in use, skipped: {exc}")
    except PortGone as exc:
        return replace(port, role=ROLE_GONE, why=f"cannot be opened: {exc}")
    try:
        for attempt in range(1, attempts + 1):
            try:
                await session.command("AT")
            except CommandTimeout:
                continue
            except CommandFailed:
                pass  # "ERROR" to a bare AT is still an AT interpreter
            except PortGone as exc:
                return replace(port, role=ROLE_GONE, why=f"vanished while probed: {exc}")
            said = "answered AT" if attempt == 1 else f"answered AT on attempt {attempt}"
            return replace(port, role=ROLE_AT, why=said)
    finally:
        await session.close()
    waited = f"{attempts} x AT unanswered in {attempts * answer_within:g}s"
    if session.nmea_lines:
        return replace(
            port, role=ROLE_NMEA, why=f"GPS/NMEA port: {session.nmea_lines} NMEA lines, {waited}"
        )
    if session.garbage:
        return replace(
            port, role=ROLE_DIAG, why=f"DIAG/binary port: {session.garbage} binary chunks, {waited}"
        )
    return replace(port, role=ROLE_SILENT, why=f"silent: {waited}")


async def probe_group(
    group: PortGroup,
    *,
    baudrate: int = 115200,
    limit: asyncio.Semaphore | None = None,
    attempts: int = PROBE_ATTEMPTS,
    answer_within: float = PROBE_TIMEOUT,
    on_port_done: Callable[[], None] | None = None,
) -> PortGroup:
    """``group`` with every port classified: by the table, else by probing (concurrently).
    A port a table already named is not opened; an AT port of the table is trusted."""
    limit = limit or asyncio.Semaphore(PROBE_CONCURRENCY)

    async def classify(port: PortInfo) -> PortInfo:
        port = classify_by_table(port)
        if port.role == ROLE_UNKNOWN:
            async with limit:
                port = await probe_port(
                    port, baudrate=baudrate, attempts=attempts, answer_within=answer_within
                )
        if on_port_done is not None:
            on_port_done()
        return port

    ports = await asyncio.gather(*(classify(port) for port in group.ports))
    ignored_in = f" (slot {group.slot})"
    ports = [replace(p, why=p.why + ignored_in) if p.role in IGNORED_ROLES else p for p in ports]
    return replace(group, ports=tuple(ports))


async def split_by_identity(
    group: PortGroup,
    *,
    baudrate: int = 115200,
    answer_within: float = PROBE_TIMEOUT,
    labels: Mapping[str, str] | None = None,
) -> list[PortGroup]:
    """A probed group as the modems it is, by what each AT port says its IMEI is.

    AT ports that name one IMEI (or none) are one modem, as the ports of a Quectel or a
    3-port Huawei are. AT ports naming different IMEIs are modems of their own behind one
    USB device, as on a multi-UART chip the table does not know: each becomes a group,
    keyed and named by its UART; the first keeps the device's key and slot (so a worker
    already shown there stays), and the ports that are not AT stay with it. Pool modules
    that share an IMEI on such a chip cannot be told apart this way (see the module
    docstring for the layouts that still separate them).
    """
    at_ports = group.at_ports
    if len(at_ports) < 2:
        return [group]
    imeis = await asyncio.gather(
        *(_imei_of(port, baudrate=baudrate, answer_within=answer_within) for port in at_ports)
    )
    if len({imei for imei in imeis if imei}) < 2:
        return [group]
    by_modem: dict[str, list[PortInfo]] = {}
    for port, imei in zip(at_ports, imeis, strict=True):
        by_modem.setdefault(imei or port.device, []).append(port)
    index = label_index(labels or {})
    groups = []
    for number, modem_ports in enumerate(by_modem.values()):
        if number == 0:
            key, slot = group.key, group.slot
            modem_ports += [p for p in group.ports if p.role != ROLE_AT]
        else:
            usb = parse_by_path(modem_ports[0].by_path or "")
            key = usb.uart_key if usb else f"{group.key}:{modem_ports[0].device}"
            slot = usb.uart_slot if usb else f"{group.slot}-{number}"
        label = slot_label(key, slot, index) or (group.label if number == 0 else None)
        groups.append(PortGroup(key, slot, label, tuple(sorted(modem_ports, key=_port_order))))
    log.info(
        "slot %s: %d modems behind one USB device (IMEIs %s): %s",
        group.slot,
        len(groups),
        ", ".join(sorted({imei for imei in imeis if imei})),
        ", ".join(g.slot for g in groups),
    )
    return groups


async def _imei_of(port: PortInfo, *, baudrate: int, answer_within: float) -> str | None:
    """What ``AT+CGSN`` on ``port`` says, or None when it says nothing usable."""
    from agent.modem.session import AtSession

    try:
        # A probe's short wait: the port answered AT moments ago, and a multi-UART board
        # must not hold the scan a command timeout per UART.
        session = await AtSession.open(
            port.device, baudrate=baudrate, name=port.device, command_timeout=answer_within
        )
    except PortGone:
        return None
    try:
        for _ in range(PROBE_ATTEMPTS):  # an autobauding module may skip the first
            try:
                return commands.parse_imei(await session.command("AT+CGSN")).digits
            except CommandTimeout:
                continue
            except (CommandFailed, AtParseError, PortGone):
                return None
        return None
    finally:
        await session.close()


# ---------------------------------------------------------------------- the scan

ScanProgress = Callable[[str, int, int], None]
"""Called with (stage, done, total); stage is "probing" (ports) or "identifying" (modems)."""


async def scan(
    globs: Sequence[str] = (),
    *,
    labels: Mapping[str, str] | None = None,
    auto: bool = True,
    by_path_dir: Path = BY_PATH_DIR,
    baudrate: int = 115200,
    concurrency: int = PROBE_CONCURRENCY,
    attempts: int = PROBE_ATTEMPTS,
    answer_within: float = PROBE_TIMEOUT,
    command_timeout: float = 3.0,
    ussd: Mapping[str, UssdRecipe] | None = None,
    progress: ScanProgress | None = None,
) -> ScanResult:
    """One discovery pass with identification: every modem and every ignored port.

    A modem is identified as soon as its own ports are classified, while silent ports
    elsewhere still wait out their probe: the pass takes about the longest of the two,
    not their sum.
    """
    from agent.modem.own_number import MemoryNumberBook, recipes

    book = MemoryNumberBook()
    table = recipes({}) if ussd is None else ussd
    ports = await asyncio.to_thread(enumerate_ports, globs, auto=auto, by_path_dir=by_path_dir)
    groups = group_ports(ports, labels)
    probe_limit = asyncio.Semaphore(concurrency)
    identify_limit = asyncio.Semaphore(concurrency)
    counts = {"probing": 0, "identifying": 0}
    totals = {"probing": len(ports), "identifying": 0}

    def advance(stage: str, by: int = 1, total: int = 0) -> None:
        counts[stage] += by
        totals[stage] += total
        if progress is not None:
            progress(stage, counts[stage], totals[stage])

    async def identify(group: PortGroup) -> tuple[PortGroup, ModemStatus | None]:
        if group.at_port is None:
            return group, None
        advance("identifying", by=0, total=1)
        async with identify_limit:
            status = await identify_group(
                group, baudrate=baudrate, command_timeout=command_timeout, ussd=table, book=book
            )
        advance("identifying")
        return group, status

    async def one(group: PortGroup) -> list[tuple[PortGroup, ModemStatus | None]]:
        group = await probe_group(
            group,
            baudrate=baudrate,
            limit=probe_limit,
            attempts=attempts,
            answer_within=answer_within,
            on_port_done=lambda: advance("probing"),
        )
        modems = await split_by_identity(
            group, baudrate=baudrate, answer_within=answer_within, labels=labels
        )
        return list(await asyncio.gather(*(identify(modem) for modem in modems)))

    advance("probing", by=0)
    results = [pair for pairs in await asyncio.gather(*map(one, groups)) for pair in pairs]
    return ScanResult(
        modems=tuple(status for _, status in results if status is not None),
        ignored=tuple(port for group, _ in results for port in group.ignored),
    )


async def identify_group(
    group: PortGroup,
    *,
    baudrate: int = 115200,
    command_timeout: float = 3.0,
    ussd: Mapping[str, UssdRecipe],
    book: NumberBook,
) -> ModemStatus:
    """Open the group's AT port and say what the modem and its SIM are.

    The set-up and identification are :func:`agent.modem.startup.identify` and the number
    is :mod:`agent.modem.own_number`'s, exactly as the worker does them; this adds only the
    signal and registration read. A port that stops answering gives a FAILED status with
    the reason, not an exception: one bad modem must not spoil a scan.
    """
    from agent.modem import own_number, startup
    from agent.modem.session import AtSession

    at_port = group.at_port
    assert at_port is not None, "identify_group needs a probed group with an AT port"
    status = ModemStatus(
        slot=group.slot,
        label=group.label,
        ports=tuple(port.device for port in group.at_ports),
        at_port=at_port.device,
        state=ModemState.STARTING,
        updated_at=time.time(),
    )
    try:
        session = await AtSession.open(
            at_port.device, baudrate=baudrate, name=group.slot, command_timeout=command_timeout
        )
    except PortGone as exc:
        return replace(status, state=ModemState.GONE, fault=str(exc))
    answers: asyncio.Queue[UssdReceived] = asyncio.Queue()
    forwarder = asyncio.create_task(_forward_ussd(session, answers))
    try:
        identity = await startup.identify(session)
        setup, sim = identity.setup, identity.sim
        status = replace(
            status,
            manufacturer=setup.manufacturer,
            model=setup.model,
            imei=setup.imei,
            sim_state=setup.sim_state,
        )
        if sim is not None:
            number, source = await own_number.resolve(
                session,
                iccid=sim.iccid,
                network=sim.operator,
                vendor=setup.vendor,
                book=book,
                table=ussd,
                answers=QueuedAnswers(answers),
            )
            status = replace(
                status,
                iccid=sim.iccid,
                imsi=sim.imsi,
                operator=sim.serving or sim.operator,
                operator_name=sim.operator_name,
                number=number,
                number_source=source if number else NumberSource.UNKNOWN,
            )
        status = await _network_status(session, status)
        return replace(status, state=ModemState.READY, updated_at=time.time())
    except (CommandTimeout, PortGone) as exc:
        return replace(status, state=ModemState.FAILED, fault=str(exc), updated_at=time.time())
    finally:
        forwarder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await forwarder
        await session.close()


async def _forward_ussd(session: AtSession, answers: asyncio.Queue[UssdReceived]) -> None:
    """Hand ``+CUSD`` answers to the own-number request; other URCs do not matter here."""
    while True:
        urc = await session.urcs.get()
        if isinstance(urc, UssdReceived):
            answers.put_nowait(urc)


async def _network_status(session: AtSession, status: ModemStatus) -> ModemStatus:
    """Signal (``+CSQ``) and registration (``+CREG``, else ``+CEREG`` on LTE-only cells)."""
    from agent.modem.startup import registration_word

    try:
        signal = commands.parse_csq(await session.command("AT+CSQ"))
        status = replace(status, signal_dbm=signal.dbm, signal_bars=signal.bars)
    except (CommandFailed, AtParseError) as exc:
        log.info("%s: AT+CSQ: %s", session.name, exc)
    for query in ("AT+CREG?", "AT+CEREG?"):
        try:
            registration = commands.parse_registration(await session.command(query))
        except (CommandFailed, AtParseError) as exc:
            log.info("%s: %s: %s", session.name, query, exc)
            continue
        status = replace(
            status,
            registration=registration_word(registration),
            registered=registration.registered,
        )
        if registration.registered:
            break
    return status
