"""The SIM's balance by USSD: which code to dial per network, and how to read the answer.

Each network has its code and its wording, keyed by MCC+MNC like the own-number recipes
(:mod:`agent.modem.own_number`; the built-in balance recipes cover the same operators).
Configuration (``[sims.balance."MCCMNC"]``) adds networks and overrides these; the
pattern's named group ``amount`` is the amount, an optional group ``currency`` the
currency as the operator wrote it, else the recipe's ``currency``.

A pattern may come from a person, and a regular expression can backtrack for minutes on a
short answer, so patterns are checked as block rules are (:mod:`agent.patterns`) and
searched with the same timeout; an answer that takes longer counts as unreadable, and its
text is kept for a person to read (docs/upkeep.md).

When to ask: every ``interval`` (a day by default), each SIM at its own moment of the day
(:func:`next_due`, from a hash of its ICCID), so a site of 64 SIMs does not call the
operators all at once; a SIM never asked is asked when it is first seen.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass

import regex

from agent.config import BalanceRecipeConfig
from agent.patterns import SEARCH_TIMEOUT, pattern_problem

# An amount as operators write it: "123,45", "-12.30", "1 234,56", "−5" (a minus sign).
AMOUNT = r"(?P<amount>[-\u2212]?\d{1,9}(?:[ \u00a0]\d{3}){0,3}(?:[.,]\d{1,2})?)"
# The amount after a word for "balance" in Russian, transliterated or English, with up
# to 24 characters between (":", " Rs.", " is £", "N").
ANY_BALANCE = r"(?i)(?:баланс|balans|balance|\bbal\b)[^\d\-\u2212]{0,24}?" + AMOUNT


@dataclass(frozen=True)
class BalanceRecipe:
    """How to ask one network for the balance: ``code``, the answer ``pattern``, the
    ``currency`` (ISO 4217) when the answer does not say it, and where it comes from."""

    code: str
    pattern: regex.Pattern[str]
    currency: str = ""
    source: str = ""


@dataclass(frozen=True)
class Balance:
    amount: float
    currency: str


class UnreadableAnswer(ValueError):
    """The answer has no amount the recipe's pattern finds (or the search ran out of
    time); ``text`` is the answer as decoded, kept for a person."""

    def __init__(self, message: str, text: str) -> None:
        super().__init__(message)
        self.text = text


def balance_pattern_problem(pattern: str) -> str | None:
    """What is wrong with a balance answer's pattern, or None (the configuration's check)."""
    if problem := pattern_problem(pattern, empty_means="so it finds no amount"):
        return problem
    if "amount" not in regex.compile(pattern).groupindex:
        return "has no (?P<amount>...) group for the amount"
    return None


def _recipe(code: str, currency: str, source: str, pattern: str = ANY_BALANCE) -> BalanceRecipe:
    return BalanceRecipe(code, regex.compile(pattern), currency, source)


# Sources: each operator's help page on "how to check my balance" (checked 2024-2025).
BUILT_IN_RECIPES: dict[str, BalanceRecipe] = {
    "25001": _recipe("*100#", "RUB", "mts.ru: Как проверить баланс"),
    "25002": _recipe("*100#", "RUB", "megafon.ru: Как узнать баланс"),
    "25099": _recipe("*102#", "RUB", "beeline.ru: Как проверить баланс"),
    "25020": _recipe("*105#", "RUB", "tele2.ru: Как проверить баланс"),
    "62130": _recipe("*310#", "NGN", "mtn.ng: check your airtime balance"),
    "23410": _recipe("*#10#", "GBP", "o2.co.uk: check your balance"),
    "310260": _recipe("#225#", "USD", "t-mobile.com: check your prepaid balance (#BAL#)"),
    "40410": _recipe("*123#", "INR", "airtel.in: check your main balance"),
}


def recipes(configured: Mapping[str, BalanceRecipeConfig]) -> dict[str, BalanceRecipe]:
    """The built-in recipes with the configured ones laid over them."""
    table = dict(BUILT_IN_RECIPES)
    for network, entry in configured.items():
        built_in = table.get(network)
        # Checked when the configuration was loaded (balance_pattern_problem).
        pattern = regex.compile(entry.pattern or ANY_BALANCE)
        table[network] = BalanceRecipe(
            entry.code,
            pattern,
            entry.currency or (built_in.currency if built_in else ""),
            "configuration",
        )
    return table


def read_balance(text: str, recipe: BalanceRecipe) -> Balance:
    """The balance in an operator's answer; UnreadableAnswer when there is none."""
    try:
        match = recipe.pattern.search(text, timeout=SEARCH_TIMEOUT)
    except TimeoutError:
        raise UnreadableAnswer(
            f"the pattern of {recipe.code} took more than {SEARCH_TIMEOUT:g} s", text
        ) from None
    if match is None:
        raise UnreadableAnswer(f"no amount in the answer to {recipe.code}", text)
    digits = regex.sub(r"[ \u00a0]", "", match["amount"]).replace("\u2212", "-")
    amount = float(digits.replace(",", "."))
    said = match.groupdict().get("currency")
    return Balance(amount, (said or recipe.currency).strip())


def phase_of(iccid: str, interval: float) -> float:
    """The SIM's moment within each ``interval``: stable across restarts, spread evenly."""
    digest = hashlib.sha256(iccid.encode()).digest()
    return int.from_bytes(digest[:8], "big") % max(1, int(interval))


def next_due(iccid: str, last_at: float | None, interval: float) -> float:
    """When to ask next (epoch seconds): at the SIM's phase, no sooner than half an
    ``interval`` after ``last_at``; at once (0) when it was never asked."""
    if last_at is None:
        return 0.0
    phase = phase_of(iccid, interval)
    earliest = last_at + interval / 2
    return phase + math.ceil((earliest - phase) / interval) * interval


def is_fresh(at: float | None, now: float, fresh_for: float) -> bool:
    """Whether a balance read at ``at`` may still be told to OnlineSim at ``now``."""
    return at is not None and 0 <= now - at < fresh_for
