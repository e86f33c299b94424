"""Balance recipes: every built-in network's answer, as every emulated module prints it
(GSM 7-bit packed hex, UCS2 hex, plain text, +CSCS="UCS2"; +CUSD: 0 and 1), read back to
the exact amount; bounded patterns; the daily schedule spread by ICCID."""

from __future__ import annotations

import random
import re
import time

import pytest
import regex

from agent.config import BalanceRecipeConfig
from agent.emulate.modems.sim import OPERATORS, Operator, make_sim, pack_gsm7_hex
from agent.modem import balance
from agent.modem.balance import UnreadableAnswer, read_balance
from agent.patterns import SEARCH_TIMEOUT
from agent.protocol.commands import UssdStatus
from agent.protocol.framer import AtFramer
from agent.protocol.urc import UssdReceived
from tests.emulate.test_modems_unit import Rig

CURRENCIES = {
    "25001": "RUB",
    "25002": "RUB",
    "25099": "RUB",
    "25020": "RUB",
    "62130": "NGN",
    "23410": "GBP",
    "310260": "USD",
    "40410": "INR",
}


def test_built_in_balance_recipes_cover_the_own_number_networks() -> None:
    from agent.modem.own_number import BUILT_IN_RECIPES as OWN_NUMBER

    assert set(balance.BUILT_IN_RECIPES) == set(OWN_NUMBER)
    assert {n: r.currency for n, r in balance.BUILT_IN_RECIPES.items()} == CURRENCIES


MODULE_FORMATS = [
    ("sim800", "GSM"),
    ("sim800", "IRA"),
    ("sim800", "UCS2"),
    ("ec25", "default"),
    ("ec25", "UCS2"),
    ("huawei", "default"),
    ("huawei", "UCS2"),
]


@pytest.mark.parametrize(("profile", "charset"), MODULE_FORMATS)
@pytest.mark.parametrize("operator", OPERATORS, ids=lambda o: o.mcc_mnc)
@pytest.mark.parametrize("amount", [123.45, -7.5, 0.0])
def test_every_network_answer_in_every_module_format_reads_back(
    operator: Operator, profile: str, charset: str, amount: float
) -> None:
    """The module's bytes go through the agent's framer, as on a real port."""
    rig = Rig(profile, operator_index=OPERATORS.index(operator))
    rig.quiet()
    if profile == "huawei":
        rig.talk("AT^CURC=0")  # no ^RSSI noise between the answer lines
    if charset != "default":
        assert rig.talk(f'AT+CSCS="{charset}"').endswith(b"OK\r\n")
    rig.sim.balance = amount
    recipe = balance.BUILT_IN_RECIPES[rig.sim.operator.mcc_mnc]
    code = recipe.code
    if profile == "huawei":
        code = pack_gsm7_hex(code)
    assert rig.talk(f'AT+CUSD=1,"{code}",15').endswith(b"OK\r\n")
    rig.clock.advance(1)
    events = AtFramer().feed(rig.take())
    assert [type(event) for event in events] == [UssdReceived]
    response = events[0].response
    menu = UssdStatus.ACTION_REQUIRED if operator.balance_menu else UssdStatus.DONE
    assert response.status is menu
    assert response.text is not None
    read = read_balance(response.text, recipe)
    assert read == balance.Balance(amount, CURRENCIES[rig.sim.operator.mcc_mnc])


@pytest.mark.parametrize(
    ("text", "amount"),
    [
        ("Баланс:1 234,56р", 1234.56),
        ("Ваш баланс −12,30 руб.", -12.3),
        ("Balance: 5.00 GBP. Pakety: 500 MB do 12.05", 5.0),
        ("Main Bal:Rs.99 Val:Lifetime", 99.0),
    ],
)
def test_amounts_as_operators_write_them(text: str, amount: float) -> None:
    assert read_balance(text, balance.BUILT_IN_RECIPES["25001"]).amount == amount


def test_an_answer_without_an_amount_is_unreadable_and_keeps_its_text() -> None:
    with pytest.raises(UnreadableAnswer, match=r"no amount in the answer to \*100#") as caught:
        read_balance("Услуга временно недоступна", balance.BUILT_IN_RECIPES["25001"])
    assert caught.value.text == "Услуга временно недоступна"


def test_configured_recipe_overrides_with_its_own_currency_group() -> None:
    table = balance.recipes(
        {
            "25001": BalanceRecipeConfig("*101#", r"(?P<amount>\d+)\s*(?P<currency>[A-Z]{3})"),
            "25503": BalanceRecipeConfig("*111#", "", "UAH"),
        }
    )
    assert table["25001"].code == "*101#"
    assert read_balance("you have 40 EUR", table["25001"]) == balance.Balance(40.0, "EUR")
    assert read_balance("Balans 12,5 grn", table["25503"]) == balance.Balance(12.5, "UAH")
    assert table["25099"] is balance.BUILT_IN_RECIPES["25099"]


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        (r"\d+", "has no (?P<amount>...) group"),
        (r"(?P<amount>\d*)", "matches an empty value, so it finds no amount"),
        ("(?P<amount>" + "a" * 300 + ")", "characters long (at most 256)"),
        (r"(?P<amount>(?:\d{100}){100})", "multiply to 10,000"),
    ],
)
def test_bad_patterns_are_refused_naming_the_problem(pattern: str, problem: str) -> None:
    said = balance.balance_pattern_problem(pattern)
    assert said is not None
    assert problem in said


def test_a_backtracking_pattern_gives_up_within_the_bound() -> None:
    recipe = balance.BalanceRecipe("*100#", regex.compile(r"^(?P<amount>(a|aa)+)$"), "RUB")
    started = time.monotonic()
    with pytest.raises(UnreadableAnswer, match="took more than"):
        read_balance("a" * 40 + "b", recipe)
    assert time.monotonic() - started < SEARCH_TIMEOUT + 0.5


def test_schedule_is_daily_at_each_sims_own_moment() -> None:
    day = 86400.0
    iccids = [make_sim(random.Random(seed)).iccid for seed in range(64)]
    phases = [balance.phase_of(iccid, day) for iccid in iccids]
    assert all(0 <= phase < day for phase in phases)
    assert len({int(phase // 3600) for phase in phases}) >= 16  # spread over the day
    iccid = iccids[0]
    assert balance.next_due(iccid, None, day) == 0.0  # never asked: at once
    last = 1_800_000_000.0
    due = balance.next_due(iccid, last, day)
    assert last + day / 2 <= due < last + day * 1.5
    assert (due - balance.phase_of(iccid, day)) % day == 0
    assert balance.next_due(iccid, due, day) == due + day


def test_freshness() -> None:
    assert balance.is_fresh(100.0, 150.0, 60.0)
    assert not balance.is_fresh(100.0, 160.0, 60.0)
    assert not balance.is_fresh(None, 150.0, 60.0)
    assert not balance.is_fresh(200.0, 150.0, 60.0)  # from the future: a clock set back


def test_recipe_codes_are_ussd_codes() -> None:
    for recipe in balance.BUILT_IN_RECIPES.values():
        assert re.fullmatch(r"[*#][\d*#]+#", recipe.code)
