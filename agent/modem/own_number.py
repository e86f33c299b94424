"""The SIM's own phone number: ``+CNUM``, else the operator's USSD code, else a person.

Most SIMs do not store their number (``AT+CNUM`` answers nothing), so the operator is
asked by USSD: each network has its code and its wording, keyed here by MCC+MNC. The
built-in recipes below come from the operators' own help pages; configuration
(``[modems.ussd."MCCMNC"]``) adds networks and overrides these. A number a person set
(``simedge sim set-number``, the dashboard) wins over anything discovered, and every number
is remembered by ICCID, so a USSD request is made once per SIM, not once per start.

The answer text is matched with the recipe's regular expression (its first group, or the
whole match, is the number); the number is then written in E.164 with libphonenumber,
using the recipe's region for numbers given without their country code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import phonenumbers

from agent.config import UssdRecipeConfig
from agent.errors import AtParseError, CommandFailed
from agent.logs import get_logger
from agent.modem import ussd
from agent.modem.session import AtSession
from agent.modem.vendors import VendorProfile
from agent.protocol import commands
from agent.status import NumberSource

if TYPE_CHECKING:  # the store (peewee) loads only when a StoreNumberBook is used
    from agent.store import Store

log = get_logger("modem.own_number")

# A phone number somewhere in an operator's sentence: optional +, then 9..15 digits that
# may be split by spaces, dashes or brackets ("+7 916 123-45-67", "8(916)1234567").
ANY_NUMBER = r"(\+?\d[\d\s\-()]{7,18}\d)"


@dataclass(frozen=True)
class UssdRecipe:
    """How to ask one network for the number: ``code``, the answer ``pattern`` (compiled),
    ``region`` (ISO 3166) for national answers, and where the recipe comes from."""

    code: str
    pattern: re.Pattern[str]
    region: str = ""
    source: str = ""


def _recipe(code: str, region: str, source: str, pattern: str = ANY_NUMBER) -> UssdRecipe:
    return UssdRecipe(code, re.compile(pattern), region, source)


# Sources: each operator's help page on "how to find out my number" (checked 2024-2025).
BUILT_IN_RECIPES: dict[str, UssdRecipe] = {
    "25001": _recipe("*111*0887#", "RU", "mts.ru: Как узнать свой номер"),
    "25002": _recipe("*205#", "RU", "megafon.ru: Как узнать свой номер"),
    "25099": _recipe("*110*10#", "RU", "beeline.ru: Как узнать свой номер"),
    "25020": _recipe("*201#", "RU", "tele2.ru: Как узнать свой номер"),
    "62130": _recipe("*663#", "NG", "mtn.ng: check your MTN number"),
    "23410": _recipe("*#100#", "GB", "o2.co.uk: find your phone number"),
    "310260": _recipe("#686#", "US", "t-mobile.com: find your phone number"),
    "40410": _recipe("*282#", "IN", "airtel.in: know your Airtel number"),
}


def recipes(configured: Mapping[str, UssdRecipeConfig]) -> dict[str, UssdRecipe]:
    """The built-in recipes with the configured ones laid over them."""
    table = dict(BUILT_IN_RECIPES)
    for network, entry in configured.items():
        built_in = table.get(network)
        table[network] = UssdRecipe(
            entry.code,
            re.compile(entry.pattern or ANY_NUMBER),
            entry.region or (built_in.region if built_in else ""),
            "configuration",
        )
    return table


def number_from_answer(text: str, recipe: UssdRecipe) -> str | None:
    """The number in an operator's USSD answer, in E.164 when it can be made so."""
    match = recipe.pattern.search(text)
    if match is None:
        return None
    found = match.group(1) if match.groups() else match.group(0)
    return normalise(found, recipe.region)


def international_number(number: str) -> str:
    """A number a person typed (``+<country><number>``) in E.164; ValueError says what is
    wrong with it, quoting it."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"{number!r}: {exc}; give it as +<country><number>") from exc
    if not phonenumbers.is_possible_number(parsed):
        raise ValueError(f"{number!r} is not a possible phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalise(number: str, region: str = "") -> str | None:
    """``number`` in E.164 (``+79161234567``); digits as given when no region helps."""
    compact = re.sub(r"[^\d+]", "", number)
    if not re.fullmatch(r"\+?\d{6,15}", compact):
        return None
    try:
        parsed = phonenumbers.parse(compact, region.upper() or None)
    except phonenumbers.NumberParseException:
        return compact
    if not phonenumbers.is_possible_number(parsed):
        return compact
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


class NumberBook(Protocol):
    """Where numbers are remembered by ICCID (the store, in the agent)."""

    async def sim_number(self, iccid: str) -> tuple[str, NumberSource] | None: ...

    async def remember_number(self, iccid: str, number: str, source: NumberSource) -> None: ...


class StoreNumberBook:
    """The store as a NumberBook: numbers live with the SIM's row, keyed by ICCID."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def sim_number(self, iccid: str) -> tuple[str, NumberSource] | None:
        from agent.store.models import Sim

        def lookup() -> tuple[str, NumberSource] | None:
            sim = Sim.get_or_none(Sim.iccid == iccid)
            if sim is None or not sim.number:
                return None
            try:
                return sim.number, NumberSource(sim.number_source or "unknown")
            except ValueError:
                return sim.number, NumberSource.UNKNOWN

        return await self._store.read(lookup)

    async def remember_number(self, iccid: str, number: str, source: NumberSource) -> None:
        await self._store.upsert_sim(iccid, number=number, number_source=str(source))


class MemoryNumberBook:
    """A NumberBook in memory: for one run of the emulator or a test."""

    def __init__(self) -> None:
        self.numbers: dict[str, tuple[str, NumberSource]] = {}

    async def sim_number(self, iccid: str) -> tuple[str, NumberSource] | None:
        return self.numbers.get(iccid)

    async def remember_number(self, iccid: str, number: str, source: NumberSource) -> None:
        known = self.numbers.get(iccid)
        if known is None or known[1] is not NumberSource.MANUAL or source is NumberSource.MANUAL:
            self.numbers[iccid] = (number, source)


async def read_cnum(session: AtSession) -> str | None:
    """The first number ``+CNUM`` gives, or None."""
    try:
        entries = commands.parse_cnum(await session.command("AT+CNUM"))
    except (CommandFailed, AtParseError) as exc:
        log.info("%s: AT+CNUM: %s", session.name, exc)
        return None
    for entry in entries:
        number = normalise(entry.international)
        if number:
            return number
    return None


async def ask_ussd(
    session: AtSession,
    recipe: UssdRecipe,
    vendor: VendorProfile,
    answers: ussd.Answers,
    *,
    answer_within: float = 20.0,
) -> str | None:
    """Ask the recipe's code (:func:`agent.modem.ussd.ask`); the number in the answer, or None."""
    answer = await ussd.ask(
        session,
        recipe.code,
        vendor,
        answers,
        answer_within=answer_within,
    )
    if answer.text is None:
        return None
    number = number_from_answer(answer.text, recipe)
    if number is None:
        log.info("%s: USSD %s: no number in %r", session.name, recipe.code, answer.text)
    return number


async def resolve(
    session: AtSession,
    *,
    iccid: str,
    network: str | None,
    vendor: VendorProfile,
    book: NumberBook,
    table: Mapping[str, UssdRecipe],
    answers: ussd.Answers,
    answer_within: float = 20.0,
    refresh: bool = False,
) -> tuple[str | None, NumberSource]:
    """The SIM's number and where it came from; remembered in ``book``.

    A number a person set wins; then ``+CNUM``; then a number learnt earlier by USSD
    (unless ``refresh``); then the network's USSD recipe.
    """
    known = await book.sim_number(iccid)
    if known is not None and known[1] is NumberSource.MANUAL:
        return known
    number = await read_cnum(session)
    if number is not None:
        if known != (number, NumberSource.CNUM):
            await book.remember_number(iccid, number, NumberSource.CNUM)
        return number, NumberSource.CNUM
    if known is not None and not refresh:
        return known
    recipe = table.get(network or "")
    if recipe is None:
        log.info("%s: no own-number USSD recipe for network %s", session.name, network)
        return known if known else (None, NumberSource.UNKNOWN)
    number = await ask_ussd(
        session,
        recipe,
        vendor,
        answers,
        answer_within=answer_within,
    )
    if number is None:
        return known if known else (None, NumberSource.UNKNOWN)
    await book.remember_number(iccid, number, NumberSource.USSD)
    return number, NumberSource.USSD
