"""Emulated SIM cards: identities, the operator behind them, and their USSD answers.

A SIM carries what the agent must learn about a line: the ICCID (its durable identity), the
IMSI (whose first 5 or 6 digits are the operator's MCC+MNC), and sometimes its own number
(MSISDN) stored in EF_MSISDN for ``AT+CNUM`` — on about half the cards, because in the field
it is usually missing. When it is missing the agent must ask the operator with a USSD code;
each operator answers in its own encoding (GSM 7-bit packed hex or UCS2 hex) and wording.

The SIM also owns its SMS storage ("SM") and the SMS the network still holds for it: take
the card out and both go with it.

Upkeep (issue 17): each operator answers its balance code in its own wording, currency
and encoding, some as a menu that waits for a choice (``+CUSD: 1``). A SIM may lapse:
with ``lapse_days`` set, the network refuses it (registration denied) once that many days
pass without a chargeable event. The emulator's chargeable events, each 1 unit of the
balance: a USSD request to the operator's ``paid_code`` (an emulated paid information
service) and an SMS sent to any number, as on real prepaid SIMs.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field, replace

from agent.emulate.modems.storage import SmsStorage
from agent.protocol import gsm7

SIM_STORAGE_CAPACITY = 30


@dataclass(frozen=True)
class Operator:
    """A mobile network as the emulated SIM sees it.

    ``ussd_encoding`` is how the network answers the own-number code: "gsm7" (7-bit packed
    hex, DCS 15) or "ucs2" (UTF-16BE hex, DCS 72). ``answer`` is a ``str.format`` pattern
    with ``{number}``. ``tz_quarters`` is the network's UTC offset in quarter hours, as
    SCTS and ``+CCLK`` carry it.
    """

    mcc_mnc: str
    long_name: str
    short_name: str
    calling_code: str
    number_prefixes: tuple[str, ...]
    number_digits: int  # national significant number length
    ussd_code: str
    ussd_encoding: str
    answer: str
    answer_with_plus: bool
    tz_quarters: int
    iccid_issuer: str  # "89" + country code + issuer, the ICCID's fixed head
    iccid_length: int  # with the Luhn digit: 19 (F-padded in EF_ICCID) or 20
    # The balance: its code, the answer (``{amount}``), its encoding, whether it comes as a
    # menu (+CUSD: 1), and whether the amount is written with a decimal comma.
    balance_code: str = ""
    balance_answer: str = ""
    balance_encoding: str = "gsm7"
    balance_menu: bool = False
    decimal_comma: bool = False
    paid_code: str = "*321#"

    def balance_text(self, amount: float) -> str:
        written = f"{amount:.2f}"
        return self.balance_answer.format(
            amount=written.replace(".", ",") if self.decimal_comma else written
        )


# Each network's balance answer, in the wording its subscribers see (help pages and
# subscribers' screenshots, 2024-2025): Russian networks answer in Cyrillic (UCS2) or
# transliterated (GSM 7-bit), with a decimal comma; MTN answers with a menu.
_BALANCE: dict[str, dict[str, object]] = {
    "25001": {
        "balance_code": "*100#",
        "balance_answer": "Баланс:{amount}р",
        "balance_encoding": "ucs2",
        "decimal_comma": True,
    },
    "25002": {
        "balance_code": "*100#",
        "balance_answer": "Баланс {amount}р. Подключите интернет: *500#",
        "balance_encoding": "ucs2",
        "decimal_comma": True,
    },
    "25099": {
        "balance_code": "*102#",
        "balance_answer": "Vash balans {amount} r.",
        "decimal_comma": True,
    },
    "25020": {
        "balance_code": "*105#",
        "balance_answer": "Баланс: {amount} р.",
        "balance_encoding": "ucs2",
        "decimal_comma": True,
    },
    "62130": {
        "balance_code": "*310#",
        "balance_answer": "Main Bal: N{amount}\n1. Buy Data\n2. Borrow Airtime",
        "balance_menu": True,
    },
    "23410": {"balance_code": "*#10#", "balance_answer": "Your balance is £{amount}"},
    "310260": {"balance_code": "#225#", "balance_answer": "Your account balance is ${amount}."},
    "40410": {"balance_code": "*123#", "balance_answer": "Main Bal:Rs.{amount} Val:Lifetime"},
}

_OPERATORS: tuple[Operator, ...] = (
    Operator(
        "25001",
        "MTS RUS",
        "MTS",
        "7",
        ("910", "915", "916", "917", "919"),
        10,
        "*111*0887#",
        "ucs2",
        "Ваш номер: {number}",
        True,
        12,
        "8970101",
        20,
    ),
    Operator(
        "25002",
        "MegaFon",
        "MegaFon",
        "7",
        ("920", "925", "926", "929"),
        10,
        "*205#",
        "ucs2",
        "Ваш номер {number}. Подробнее: megafon.ru",
        False,
        12,
        "8970102",
        20,
    ),
    Operator(
        "25099",
        "Beeline",
        "Beeline",
        "7",
        ("903", "905", "906", "909"),
        10,
        "*110*10#",
        "gsm7",
        "Vash nomer {number}",
        False,
        12,
        "8970199",
        19,
    ),
    Operator(
        "25020",
        "TELE2",
        "TELE2",
        "7",
        ("900", "950", "951", "952"),
        10,
        "*201#",
        "ucs2",
        "Ваш федеральный номер {number}",
        True,
        12,
        "8970120",
        20,
    ),
    Operator(
        "62130",
        "MTN NG",
        "MTN",
        "234",
        ("803", "806", "813", "816"),
        10,
        "*663#",
        "gsm7",
        "Your number is {number}. Dial *312# for data.",
        False,
        4,
        "8923430",
        20,
    ),
    Operator(
        "23410",
        "O2 - UK",
        "O2",
        "44",
        ("7700", "7711", "7722"),
        10,
        "*#100#",
        "gsm7",
        "Your number is {number}",
        True,
        0,
        "894410",
        19,
    ),
    Operator(
        "310260",
        "T-Mobile",
        "TMO",
        "1",
        ("206", "425", "253"),
        10,
        "#686#",
        "gsm7",
        "Your phone number is {number}",
        False,
        -32,
        "8901260",
        20,
    ),
    Operator(
        "40410",
        "AirTel",
        "Airtel",
        "91",
        ("98", "99", "97"),
        10,
        "*282#",
        "gsm7",
        "Your mobile number is {number}.",
        False,
        22,
        "899110",
        20,
    ),
)


OPERATORS: tuple[Operator, ...] = tuple(
    replace(operator, **_BALANCE.get(operator.mcc_mnc, {}))  # type: ignore[arg-type]
    for operator in _OPERATORS
)


# Service centre addresses, as +CSCA prints them and as they head delivered PDUs.
SMSC_BY_NETWORK: dict[str, str] = {
    "25001": "+79168999100",
    "25002": "+79262909090",
    "25099": "+79037011111",
    "25020": "+79043490000",
    "62130": "+2348031000000",
    "23410": "+447802000332",
    "310260": "+12063130004",
    "40410": "+919810051914",
}


def luhn_digit(digits: str) -> str:
    """The Luhn check digit of ``digits`` (IMEI and ICCID both end with one)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 0:  # doubled: the digit next to the check digit, and every other
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def luhn_valid(digits: str) -> bool:
    """Whether ``digits`` end with their correct Luhn check digit."""
    return len(digits) > 1 and digits.isdigit() and luhn_digit(digits[:-1]) == digits[-1]


def _random_digits(rng: random.Random, count: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(count))


@dataclass
class SimCard:
    """One SIM: identities, whether its number is stored, its storage and network queue.

    ``network_queue`` holds the SMS the network has for this SIM and has not yet delivered
    (modem off, unregistered, storage full, or an unacknowledged ``+CMT``); the modem
    drains it.
    """

    iccid: str
    imsi: str
    msisdn: str  # international, with "+"
    number_stored: bool
    operator: Operator
    storage: SmsStorage
    network_queue: deque = field(default_factory=deque)
    # Sending: a prepaid SIM without credit is refused by its SMSC; ``sms_refusal`` makes
    # every send fail with that +CMS ERROR code (barred, congested, ...).
    credit: bool = True
    sms_refusal: int | None = None
    message_reference: int = 0  # TP-MR of the last SMS sent
    # Some operators' own-number USSD answers only with an advert, or not at all: such a
    # SIM (with no number stored either) can learn its number only from an SMS it sends.
    ussd_tells_number: bool = True
    balance: float = 100.0
    lapse_days: float | None = None  # None: never lapses
    last_activity: float | None = None  # the last chargeable event (unix time)

    def charge(self, now: float) -> None:
        """A chargeable event (paid USSD, SMS sent): 1 unit, and the lapse clock restarts."""
        self.balance -= 1
        self.last_activity = now

    def lapsed(self, now: float) -> bool:
        """Cut off by the network: ``lapse_days`` without a chargeable event."""
        if self.lapse_days is None or self.last_activity is None:
            return False
        return now - self.last_activity > self.lapse_days * 86400

    @property
    def smsc(self) -> str:
        return SMSC_BY_NETWORK[self.operator.mcc_mnc]

    @property
    def ef_iccid(self) -> str:
        """EF_ICCID as ``AT+CRSM=176,12258,0,0,10`` prints it: BCD, nibbles swapped, F pad."""
        padded = self.iccid.ljust(20, "F")
        return "".join(padded[i + 1] + padded[i] for i in range(0, 20, 2))

    def ussd_answer(self, code: str, now: float) -> tuple[str, str, int] | None:
        """The network's answer to USSD ``code`` as (text, encoding "gsm7" or "ucs2",
        +CUSD status), or None for a code the network does not know."""
        operator = self.operator
        if code == operator.ussd_code:
            if not self.ussd_tells_number:
                return None
            number = self.msisdn if operator.answer_with_plus else self.msisdn.lstrip("+")
            return operator.answer.format(number=number), operator.ussd_encoding, 0
        if code == operator.balance_code:
            status = 1 if operator.balance_menu else 0
            return operator.balance_text(self.balance), operator.balance_encoding, status
        if code == operator.paid_code:
            self.charge(now)
            return "Zapros prinyat", "gsm7", 0
        return None


def pack_gsm7_hex(text: str) -> str:
    """``text`` as GSM 7-bit packed octets in hex, as USSD strings travel (23.038 6.1.2.3)."""
    units = gsm7.encode_chars(text)
    if units is None:
        raise ValueError(f"not in the GSM 7-bit alphabet: {text!r}")
    septets = b"".join(units)
    packed = gsm7.pack_septets(septets)
    if len(septets) % 8 == 7:
        # 7 spare bits in the last octet would read as an "@": 23.038 pads with CR instead.
        packed = packed[:-1] + bytes((packed[-1] | (0x0D << 1),))
    return packed.hex().upper()


def unpack_gsm7_hex(hex_text: str) -> str:
    """The text of a GSM 7-bit packed hex string (a USSD request some modems demand)."""
    data = bytes.fromhex(hex_text)
    count = len(data) * 8 // 7
    septets = gsm7.unpack_septets(data, count)
    if count and count % 8 == 0 and septets[-1] == 0x0D:
        septets = septets[:-1]
    return gsm7.decode_septets(septets)


def make_sim(rng: random.Random, operator: Operator | None = None) -> SimCard:
    """A new SIM with seeded identities; its number is stored for ``+CNUM`` half the time."""
    operator = operator or rng.choice(OPERATORS)
    body_length = operator.iccid_length - 1 - len(operator.iccid_issuer)
    iccid_body = operator.iccid_issuer + _random_digits(rng, body_length)
    iccid = iccid_body + luhn_digit(iccid_body)
    imsi = operator.mcc_mnc + _random_digits(rng, 15 - len(operator.mcc_mnc))
    prefix = rng.choice(operator.number_prefixes)
    national = prefix + _random_digits(rng, operator.number_digits - len(prefix))
    return SimCard(
        iccid=iccid,
        imsi=imsi,
        msisdn=f"+{operator.calling_code}{national}",
        number_stored=rng.random() < 0.5,
        operator=operator,
        storage=SmsStorage("SM", SIM_STORAGE_CAPACITY),
    )
