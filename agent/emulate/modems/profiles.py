"""What each emulated module looks like: identity strings, USB interfaces, commands, quirks.

The quirks are the point: an agent that works against one module only is not done. Each
profile reproduces what its real module does, as documented by the vendor or seen in the
field (docs/modems.md):

- ``sim800``: SIMCom SIM800 behind a CH340 bridge (1a86:7523, no USB serial). One UART.
  Autobauds after power-up (the first ``AT`` goes unanswered; no boot URCs until then) until
  ``AT+IPR=<rate>`` fixes the rate, which the module keeps across restarts. Indices from 1.
  ``AT+CCID``. No ``+CEREG`` (2G only). ``AT+CUSD`` takes the code as plain text.
  Refuses ``AT+CHUP`` here (a call is rejected with ``ATH``), so the agent's fallback
  is exercised; the EC25 and Huawei profiles take both.
  When the SIM is full a new SMS goes to the module's own memory ("ME").
- ``ec25``: Quectel EC25 (2c7c:0125): four interfaces, if0 DIAG (binary noise), if1 NMEA,
  if2 AT (URCs go here), if3 a second AT port sharing the modem's state. ``AT+QCCID``
  (19-digit ICCIDs printed with their ``F`` pad). ``+CEREG``. Indices from 0. Spills
  into its own memory ("ME") when the SIM is full.
- ``huawei``: Huawei E173 stick (12d1:1436), the PCUI port (interface 2). Floods ``^RSSI``
  / ``^MODE`` URCs until ``AT^CURC=0``; ``AT^ICCID?`` answers nibble-swapped like EF_ICCID;
  says ``^SMMEMFULL`` when its storage fills; refuses CNMI ``<ds>=1``; wants the USSD code
  itself GSM 7-bit packed hex (``AT+CUSD=1,"AA180C3602",15``); ME storage is volatile.
  Indices from 0.
- ``pool``: a multi-port pool board of SIM800 modules, each behind its own CH340: the same
  IMEI on every module of a board of 8, no USB serial numbers.
- ``huawei3``: a Huawei E1550 stick (12d1:1001) with all three ports: if0 the modem port
  (answers AT; for PPP), if1 DIAG, if2 PCUI where the URCs go. Receives into its own
  memory ("ME") by default, as some modules do, until a host chooses with ``AT+CPMS``.
- ``quad``: a board of four SIM800 modules behind one 4-UART USB chip (WCH 1a86:55d9,
  not in the agent's device table): one USB device, module n on interface n, each with
  its own IMEI.
- ``mixed``: each slot draws one of sim800, ec25 and huawei (seeded).
"""

from __future__ import annotations

from dataclasses import dataclass, field

ROLE_AT = "at"
ROLE_DIAG = "diag"
ROLE_NMEA = "nmea"


@dataclass(frozen=True)
class PortSpec:
    """One USB interface of the module that shows up as a tty."""

    interface: int
    role: str


@dataclass(frozen=True)
class Profile:
    """Everything that differs between emulated modules."""

    name: str
    manufacturer: str
    model: str
    revision: str
    ati: tuple[str, ...]  # lines of ATI; "{imei}" is filled in
    tacs: tuple[str, ...]  # type allocation codes: the first 8 IMEI digits
    vid: str
    pid: str
    usb_serial: bool
    usb_manufacturer: str
    usb_product: str
    driver: str
    ports: tuple[PortSpec, ...]
    iccid_command: str  # "+CCID", "+QCCID" or "^ICCID"
    extra_commands: frozenset[str]  # optional command names this module knows
    memories: tuple[str, ...]  # what +CPMS accepts; aliases resolve via memory_aliases
    me_capacity: int
    me_volatile: bool
    index_base: int
    cnmi_support: tuple[frozenset[int], ...]  # allowed <mode>,<mt>,<bm>,<ds>,<bfr>
    cnmi_default: tuple[int, int, int, int, int]
    charsets: tuple[str, ...]
    default_charset: str
    boot_urcs: tuple[str, ...]  # "{boot}" is filled in per modem
    sim_ready_urcs: tuple[str, ...]
    autobaud: bool
    ussd_packed_request: bool
    memfull_urc: str | None
    csq_ber: int
    cops_act: int | None
    curc_noise: bool
    memory_aliases: dict[str, str] = field(default_factory=dict)
    board_size: int = 0  # >0: modules of a board share one IMEI (modem pools)
    # >0: modules of a board sit behind one multi-UART USB chip, module n on its UART n
    # (USB interface n), each with an IMEI of its own.
    uart_board: int = 0
    urc_interface: int | None = None  # the AT port URCs go to; None: the lowest
    # +CPMS after power-up, before any host chose: what SMS arriving then are stored in.
    default_cpms: tuple[str, str, str] = ("SM", "SM", "SM")
    # A new SMS for a full SIM goes to the modem's own memory, with +CMTI: "ME",<index>.
    spill_to_me: bool = False
    # Prints a GSM 7-bit USSD answer as text (SIM800 with +CSCS "GSM" or "IRA"), not as
    # the packed hex the network sent.
    ussd_text_answers: bool = False


def _ranges(*values: tuple[int, ...]) -> tuple[frozenset[int], ...]:
    return tuple(frozenset(v) for v in values)


SIM800 = Profile(
    name="sim800",
    manufacturer="SIMCOM_Ltd",
    model="SIMCOM_SIM800L",
    revision="Revision:1418B04SIM800L24",
    ati=("SIM800 R14.18",),
    tacs=("86203703", "86440703"),
    vid="1a86",
    pid="7523",
    usb_serial=False,
    usb_manufacturer="QinHeng Electronics",
    usb_product="USB2.0-Serial",
    driver="ch341",
    ports=(PortSpec(0, ROLE_AT),),
    iccid_command="+CCID",
    extra_commands=frozenset({"+CCID", "+CGREG"}),
    memories=("SM", "ME", "SM_P", "ME_P", "MT"),
    memory_aliases={"SM_P": "SM", "ME_P": "ME"},
    me_capacity=50,
    me_volatile=False,
    index_base=1,
    cnmi_support=_ranges((0, 1, 2, 3), (0, 1, 2, 3), (0, 2), (0, 1), (0, 1)),
    cnmi_default=(2, 1, 0, 0, 0),
    charsets=("IRA", "GSM", "UCS2", "HEX", "PCCP", "PCDN", "8859-1"),
    default_charset="IRA",
    boot_urcs=("RDY", "+CFUN: 1", "+CPIN: READY", "Call Ready", "SMS Ready"),
    sim_ready_urcs=("+CPIN: READY", "Call Ready", "SMS Ready"),
    autobaud=True,
    ussd_packed_request=False,
    ussd_text_answers=True,
    memfull_urc=None,
    csq_ber=0,
    cops_act=None,
    curc_noise=False,
    spill_to_me=True,
)

EC25 = Profile(
    name="ec25",
    manufacturer="Quectel",
    model="EC25",
    revision="EC25EFAR06A06M4G",
    ati=("Quectel", "EC25", "Revision: EC25EFAR06A06M4G"),
    tacs=("86681503", "86758104"),
    vid="2c7c",
    pid="0125",
    usb_serial=False,
    usb_manufacturer="Quectel",
    usb_product="EG25-G",
    driver="option",
    ports=(
        PortSpec(0, ROLE_DIAG),
        PortSpec(1, ROLE_NMEA),
        PortSpec(2, ROLE_AT),
        PortSpec(3, ROLE_AT),
    ),
    iccid_command="+QCCID",
    extra_commands=frozenset({"+QCCID", "+QURCCFG", "+CGREG", "+CEREG", "+CHUP"}),
    memories=("SM", "ME", "MT"),
    me_capacity=255,
    me_volatile=False,
    index_base=0,
    cnmi_support=_ranges((0, 1, 2), (0, 1, 2, 3), (0, 2), (0, 1, 2), (0, 1)),
    cnmi_default=(2, 1, 0, 0, 0),
    charsets=("GSM", "IRA", "UCS2"),
    default_charset="GSM",
    boot_urcs=("RDY", "+CPIN: READY", "+QUSIM: 1", "+QIND: SMS DONE"),
    sim_ready_urcs=("+CPIN: READY", "+QUSIM: 1", "+QIND: SMS DONE"),
    autobaud=False,
    ussd_packed_request=False,
    memfull_urc=None,
    csq_ber=99,
    cops_act=7,
    curc_noise=False,
    spill_to_me=True,
)

HUAWEI = Profile(
    name="huawei",
    manufacturer="huawei",
    model="E173",
    revision="11.126.85.00.209",
    ati=(
        "Manufacturer: huawei",
        "Model: E173",
        "Revision: 11.126.85.00.209",
        "IMEI: {imei}",
        "+GCAP: +CGSM,+DS,+ES",
    ),
    tacs=("86761502", "86388302"),
    vid="12d1",
    pid="1436",
    usb_serial=False,
    usb_manufacturer="HUAWEI",
    usb_product="HUAWEI Mobile",
    driver="option",
    ports=(PortSpec(2, ROLE_AT),),
    iccid_command="^ICCID",
    extra_commands=frozenset({"^ICCID", "+CGREG", "^CURC", "^PORTSEL", "+CHUP"}),
    memories=("SM", "ME"),
    me_capacity=100,
    me_volatile=True,
    index_base=0,
    cnmi_support=_ranges((0, 1, 2), (0, 1, 2, 3), (0, 2), (0, 2), (0, 1)),
    cnmi_default=(0, 0, 0, 0, 0),
    charsets=("IRA", "GSM", "UCS2"),
    default_charset="IRA",
    boot_urcs=("^BOOT:{boot},0,0,0,75", "^RSSI:17", "^MODE:5,4"),
    sim_ready_urcs=("^SIMST:1",),
    autobaud=False,
    ussd_packed_request=True,
    memfull_urc='^SMMEMFULL: "SM"',
    csq_ber=99,
    cops_act=2,
    curc_noise=True,
)

POOL = Profile(
    **{
        **SIM800.__dict__,
        "name": "pool",
        "usb_product": "USB2.0-Serial (pool board)",
        "board_size": 8,
    }
)

HUAWEI3 = Profile(
    **{
        **HUAWEI.__dict__,
        "name": "huawei3",
        "model": "E1550",
        "ati": (
            "Manufacturer: huawei",
            "Model: E1550",
            "Revision: 11.608.12.02.143",
            "IMEI: {imei}",
            "+GCAP: +CGSM,+DS,+ES",
        ),
        "revision": "11.608.12.02.143",
        "pid": "1001",
        "ports": (PortSpec(0, ROLE_AT), PortSpec(1, ROLE_DIAG), PortSpec(2, ROLE_AT)),
        "urc_interface": 2,
        "default_cpms": ("ME", "ME", "ME"),
    }
)

QUAD = Profile(
    **{
        **SIM800.__dict__,
        "name": "quad",
        "pid": "55d9",
        "usb_product": "USB Quad_Serial",
        "driver": "ch9344",
        "uart_board": 4,
        "autobaud": False,  # the board's firmware fixes the rate of its modules
    }
)

PROFILES: dict[str, Profile] = {p.name: p for p in (SIM800, EC25, HUAWEI, POOL, HUAWEI3, QUAD)}
MIXED_CHOICES = ("sim800", "ec25", "huawei")
PROFILE_NAMES = (*PROFILES, "mixed")
