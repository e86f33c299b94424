"""Setting a modem up for receiving, and finding out what it and its SIM are.

:func:`initialise` runs on a fresh port, after every reset and after a spontaneous
reboot: it syncs (SIM800 autobaud), switches echo off and numeric errors on, identifies the
vendor by ``+CGMI``/``ATI`` (never by port name) to silence its noise (Quectel URCs to the
AT port, Huawei ``^CURC=0``), checks the SIM, selects PDU mode and SIM storage (and notes
every storage received SMS may sit in: ``AT+CPMS=?`` and the modem's own choice, since many
modules spill into "ME" when the SIM is full and some receive into it by default), asks for
``+CMTI`` through the first ``+CNMI`` the modem accepts (falling back to direct ``+CMT``
with ``+CSMS=1`` acknowledgements only when it insists). :func:`identify_sim` then reads
ICCID (vendor command, then the generic ``+CRSM`` read of EF_ICCID), IMSI and operator.

Each step that a modem may refuse without harm is tried and logged; only a dead port
(CommandTimeout, PortGone) aborts the whole setup, because that is the recovery ladder's
business.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from agent.errors import AtParseError, CommandFailed
from agent.logs import get_logger
from agent.modem.session import AtSession
from agent.protocol import commands
from agent.protocol.commands import (
    MessageIndication,
    PinStatus,
    Registration,
    RegistrationStatus,
    StorageUsage,
)
from agent.status import SimState

log = get_logger("modem.startup")


class Vendor(StrEnum):
    """Module families whose quirks the agent handles."""

    SIMCOM = "simcom"
    QUECTEL = "quectel"
    HUAWEI = "huawei"
    OTHER = "other"


@dataclass(frozen=True)
class CnmiChoice:
    """A ``+CNMI`` setting: the command, and whether it makes the modem deliver SMS
    directly (``+CMT``, acknowledged with ``+CNMA`` under ``+CSMS=1``)."""

    command: str
    direct: bool = False

    def matches(self, current: MessageIndication) -> bool:
        """Whether a ``+CNMI?`` answer has this setting's mode and SMS indication (the
        fields after them vary by modem and are not ours to judge)."""
        wanted = self.command.split("=", 1)[1].split(",")
        return current.mode == int(wanted[0]) and (len(wanted) < 2 or current.mt == int(wanted[1]))


# Stored delivery (+CMTI) first: the SMS stays on the SIM until the store has it. Direct
# delivery (+CMT) only when the modem refuses every stored form: an SMS then lives only in
# the agent's memory until ingested, and a missed +CNMA turns delivery off.
CNMI_CHOICES: tuple[CnmiChoice, ...] = (
    CnmiChoice("AT+CNMI=2,1,0,0,0"),
    CnmiChoice("AT+CNMI=2,1,0,0"),
    CnmiChoice("AT+CNMI=2,1"),
    CnmiChoice("AT+CNMI=1,1,0,0,0"),
    CnmiChoice("AT+CNMI=2,2", direct=True),
)

# Vendor command first (it is what the module documents), the generic EF_ICCID read last.
ICCID_COMMANDS: dict[Vendor, tuple[str, ...]] = {
    Vendor.SIMCOM: ("AT+CCID", "AT+CICCID"),
    Vendor.QUECTEL: ("AT+QCCID",),
    Vendor.HUAWEI: ("AT^ICCID?",),
    Vendor.OTHER: ("AT+CCID", "AT+QCCID", "AT+CICCID", "AT^ICCID?"),
}
CRSM_ICCID = "AT+CRSM=176,12258,0,0,10"

# Rejecting an incoming call: 27.007's AT+CHUP rejects a call that is only ringing; a
# module that refuses it (the SIM800's manual documents ATH for hanging up) gets V.250's
# ATH. The first that works is kept per modem (agent.modem.calls).
HANGUP_COMMANDS: dict[Vendor, tuple[str, ...]] = {
    Vendor.SIMCOM: ("AT+CHUP", "ATH"),
    Vendor.QUECTEL: ("AT+CHUP", "ATH"),
    Vendor.HUAWEI: ("AT+CHUP", "ATH"),
    Vendor.OTHER: ("AT+CHUP", "ATH"),
}

STORAGE = "SM"
# Storages a sweep reads, in this order (27.005 3.2.2 names): the SIM, the modem's own
# memory, status reports. "MT" is SM and ME together: read apart, never twice; "BM" (cell
# broadcast) and "TA" hold no SMS-DELIVER.
READABLE_STORAGES = ("SM", "ME", "SR")


def storages_to_read(supported: tuple[str, ...], in_use: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Which storages to sweep, from the mem1 choices of ``AT+CPMS=?`` and the storages
    ``AT+CPMS?`` named before we chose ours: SIM storage at least."""
    offered = {*supported, *in_use}
    chosen = [name for name in READABLE_STORAGES if name in offered]
    if "ME" not in offered and "MT" in offered:
        # The modem's memory is readable only as part of the union: read that instead.
        chosen = ["MT" if name == STORAGE else name for name in chosen]
        chosen = chosen if "MT" in chosen else ["MT", *chosen]
    if STORAGE not in chosen and "MT" not in chosen:
        chosen.insert(0, STORAGE)
    return tuple(chosen)


@dataclass(frozen=True)
class ModemSetup:
    """What :func:`initialise` found and chose."""

    vendor: Vendor
    manufacturer: str | None
    model: str | None
    revision: str | None
    imei: str | None
    sim_state: SimState
    cnmi: CnmiChoice | None = None  # None: no SIM, SMS setup skipped
    storage: StorageUsage | None = None
    storages: tuple[str, ...] = (STORAGE,)  # every storage a sweep reads


@dataclass(frozen=True)
class SimIdentity:
    """The SIM in the modem: ICCID (its durable identity), IMSI and the network."""

    iccid: str
    imsi: str | None
    operator: str | None  # MCC+MNC: of the IMSI (home network)
    serving: str | None  # MCC+MNC of the serving network, when registered
    operator_name: str | None


def sim_state_of(status: PinStatus) -> SimState:
    """The shared vocabulary's SIM state for a ``+CPIN`` status."""
    if status is PinStatus.READY:
        return SimState.READY
    if status is PinStatus.NOT_INSERTED:
        return SimState.ABSENT
    if status is PinStatus.NOT_READY:
        return SimState.BUSY
    return SimState.LOCKED


def registration_word(status: RegistrationStatus) -> str:
    """A word for the dashboard: home, roaming, searching, denied, ..."""
    words = {
        Registration.HOME: "home",
        Registration.ROAMING: "roaming",
        Registration.SEARCHING: "searching",
        Registration.DENIED: "denied",
        Registration.NOT_REGISTERED: "not registered",
    }
    return words.get(status.status, status.status.name.lower().replace("_", " "))


def vendor_of(manufacturer: str | None, model: str | None) -> Vendor:
    """The module family from what it says of itself."""
    text = f"{manufacturer or ''} {model or ''}".lower()
    if "quectel" in text:
        return Vendor.QUECTEL
    if "huawei" in text:
        return Vendor.HUAWEI
    if "simcom" in text or "sim800" in text or "sim7" in text:
        return Vendor.SIMCOM
    return Vendor.OTHER


async def _try(session: AtSession, line: str, command_timeout: float) -> list[str] | None:
    """``line``'s answer, or None (logged) when the modem refuses it."""
    try:
        return await session.command(line, timeout=command_timeout)
    except CommandFailed as exc:
        log.info("%s: %s refused (%s)", session.name, line, exc.name or exc.kind)
        return None


async def _text(session: AtSession, line: str, command_timeout: float) -> str | None:
    lines = await _try(session, line, command_timeout)
    if not lines:
        return None
    try:
        return commands.parse_text_value(lines)
    except AtParseError:
        return None


async def sim_status(session: AtSession, command_timeout: float) -> SimState:
    """``AT+CPIN?`` as a SimState; a modem without SIM answers with an error code."""
    try:
        lines = await session.command("AT+CPIN?", timeout=command_timeout)
    except CommandFailed as exc:
        if exc.code in (10, 310):
            return SimState.ABSENT
        if exc.code in (14, 314):
            return SimState.BUSY
        return SimState.ERROR
    return sim_state_from(lines)


def sim_state_from(lines: list[str]) -> SimState:
    """The SimState an ``AT+CPIN?`` answer gives (UNKNOWN when it cannot be read)."""
    try:
        return sim_state_of(commands.parse_cpin(lines))
    except AtParseError:
        return SimState.UNKNOWN


async def storage_usage(session: AtSession, command_timeout: float) -> StorageUsage | None:
    """Where SMS are received (mem3 of ``AT+CPMS?``) and how full it is."""
    return storage_from(await _try(session, "AT+CPMS?", command_timeout) or [])


def storage_from(lines: list[str]) -> StorageUsage | None:
    """mem3 of an ``AT+CPMS?`` answer, or None when it cannot be read."""
    try:
        usages = commands.parse_cpms_query(lines)
    except AtParseError:
        return None
    return usages[-1] if usages else None


async def initialise(session: AtSession, *, command_timeout: float = 5.0) -> ModemSetup:
    """Set the modem up for receiving SMS into SIM storage with ``+CMTI``; see the
    module docstring. Raises CommandTimeout/PortGone when the port does not answer."""
    await session.resync(attempts=5, answer_within=min(command_timeout, 1.0), quiet=0.05)
    for line in ("ATE0", "ATV1", "AT+CMEE=1"):
        await _try(session, line, command_timeout)

    manufacturer = await _text(session, "AT+CGMI", command_timeout)
    model = await _text(session, "AT+CGMM", command_timeout)
    revision = await _text(session, "AT+CGMR", command_timeout)
    if manufacturer is None or model is None:
        ati = await _try(session, "ATI", command_timeout)
        if ati:
            info = commands.parse_ati(ati)
            manufacturer, model = manufacturer or info.manufacturer, model or info.model
    vendor = vendor_of(manufacturer, model)
    imei = None
    try:
        imei = commands.parse_imei(await _try(session, "AT+CGSN", command_timeout) or []).digits
    except AtParseError:
        log.info("%s: no IMEI from AT+CGSN", session.name)

    if vendor is Vendor.QUECTEL:
        await _try(session, 'AT+QURCCFG="urcport","usbat"', command_timeout)
    elif vendor is Vendor.HUAWEI:
        await _try(session, "AT^CURC=0", command_timeout)
    await _try(session, "AT+CREG=1", command_timeout)  # registration changes as +CREG URCs

    setup = ModemSetup(vendor, manufacturer, model, revision, imei, SimState.UNKNOWN)
    sim = await sim_status(session, command_timeout)
    setup = replace(setup, sim_state=sim)
    if sim is not SimState.READY:
        log.info("%s: SIM %s: SMS setup waits for it", session.name, sim)
        return setup

    if await _try(session, "AT+CMGF=0", command_timeout) is None:
        log.warning("%s: PDU mode refused; SMS cannot be read", session.name)
    storages = await _storages(session, command_timeout)
    await _try(session, f'AT+CPMS="{STORAGE}","{STORAGE}","{STORAGE}"', command_timeout)
    storage = await storage_usage(session, command_timeout)
    cnmi = await choose_cnmi(session, command_timeout)
    return replace(setup, cnmi=cnmi, storage=storage, storages=storages)


async def _storages(session: AtSession, command_timeout: float) -> tuple[str, ...]:
    """Every storage received SMS may be in (see :func:`storages_to_read`)."""
    try:
        supported = commands.parse_cpms_support(
            await _try(session, "AT+CPMS=?", command_timeout) or []
        )[0]
    except AtParseError:
        supported = ()
    try:
        in_use = commands.parse_cpms_query(await _try(session, "AT+CPMS?", command_timeout) or [])
    except AtParseError:
        in_use = ()
    storages = storages_to_read(supported, tuple(u.storage for u in in_use if u.storage))
    log.info("%s: SMS storages to read: %s", session.name, ", ".join(storages))
    return storages


async def choose_cnmi(session: AtSession, command_timeout: float) -> CnmiChoice | None:
    """The first CNMI_CHOICES entry the modem accepts (None: none, SMS found by sweeps)."""
    for choice in CNMI_CHOICES:
        if choice.direct and await _try(session, "AT+CSMS=1", command_timeout) is None:
            continue
        if await _try(session, choice.command, command_timeout) is not None:
            if choice is not CNMI_CHOICES[0]:
                log.info("%s: new SMS indications by %s", session.name, choice.command)
            return choice
    log.warning("%s: every +CNMI setting refused: SMS found by sweeps only", session.name)
    return None


async def identify_sim(
    session: AtSession, vendor: Vendor, *, command_timeout: float = 5.0
) -> SimIdentity | None:
    """ICCID, IMSI and network of the SIM; None when no ICCID can be read."""
    iccid = None
    for line in (*ICCID_COMMANDS[vendor], CRSM_ICCID):
        answer = await _try(session, line, command_timeout)
        if not answer:
            continue
        try:
            iccid = commands.parse_iccid(answer).digits
            break
        except AtParseError as exc:
            log.info("%s: %s: %s", session.name, line, exc)
    if iccid is None:
        return None
    imsi = None
    try:
        imsi = commands.parse_imsi(await _try(session, "AT+CIMI", command_timeout) or [])
    except AtParseError:
        log.info("%s: no IMSI from AT+CIMI", session.name)
    serving, name = await serving_network(session, command_timeout)
    return SimIdentity(
        iccid=iccid,
        imsi=imsi.digits if imsi else None,
        operator=imsi.plmn if imsi else serving,
        serving=serving,
        operator_name=name,
    )


async def serving_network(
    session: AtSession, command_timeout: float
) -> tuple[str | None, str | None]:
    """(MCC+MNC, name) of the serving network from ``+COPS?``; Nones when unregistered."""
    numeric = name = None
    for fmt in (2, 0):
        if await _try(session, f"AT+COPS=3,{fmt}", command_timeout) is None:
            continue
        try:
            operator = commands.parse_cops(await _try(session, "AT+COPS?", command_timeout) or [])
        except AtParseError:
            continue
        if fmt == 2:
            numeric = operator.name
        else:
            name = operator.name
    return numeric, name
