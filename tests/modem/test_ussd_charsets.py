"""Every built-in network's balance answer over a real pty, through the real AtSession
and agent.modem.ussd.ask as the worker runs them, from each emulated module in each
character set it prints USSD in: the SIM800 in "GSM" (GSM 7-bit bytes, '£' as 0x01),
"IRA" ('£' as '?') and "UCS2", the EC25 and the Huawei stick as the network sent it."""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest

from agent.emulate.modems.sim import OPERATORS, Operator, make_sim
from agent.errors import CommandTimeout
from agent.modem import balance
from agent.modem.session import AtSession
from agent.modem.ussd import QueuedAnswers, ask
from agent.modem.vendors import vendor_named
from agent.protocol.urc import UssdReceived
from tests.modem.conftest import StartHub, at_link

MODULE_FORMATS = [
    ("sim800", "GSM"),
    ("sim800", "IRA"),
    ("sim800", "UCS2"),
    ("ec25", None),
    ("huawei", None),
    ("huawei", "UCS2"),
]


async def forward_answers(session: AtSession, answers: asyncio.Queue[UssdReceived]) -> None:
    """What the worker's forwarder does: +CUSD answers to the USSD queue."""
    while True:
        urc = await session.urcs.get()
        if isinstance(urc, UssdReceived):
            answers.put_nowait(urc)


@pytest.mark.parametrize(("profile", "charset"), MODULE_FORMATS)
async def test_every_balance_answer_reads_back_exactly_over_a_pty(
    start_hub: StartHub, profile: str, charset: str | None
) -> None:
    hub = await start_hub(profile=profile)
    modem = hub.slots[0].modem
    session = await AtSession.open(at_link(hub), command_timeout=2.0)
    answers: asyncio.Queue[UssdReceived] = asyncio.Queue(maxsize=4)
    forwarder = asyncio.create_task(forward_answers(session, answers))
    try:
        with contextlib.suppress(CommandTimeout):
            await session.command("AT", timeout=0.3)  # the SIM800's autobaud: unanswered
        await session.command("ATE0")
        if profile == "huawei":
            await session.command("AT^CURC=0")
        if charset is not None:
            await session.command(f'AT+CSCS="{charset}"')
        vendor = vendor_named(*(await session.command("AT+CGMI")), None)
        for index, operator in enumerate(OPERATORS):
            sim = make_sim(random.Random(index), operator)
            sim.balance = 1234.5 + index
            modem.sim = sim
            recipe = balance.BUILT_IN_RECIPES[operator.mcc_mnc]
            answer = await ask(
                session, recipe.code, vendor, QueuedAnswers(answers), answer_within=2.0
            )
            assert answer.error is None, (operator.mcc_mnc, answer)
            assert answer.text is not None
            read = balance.read_balance(answer.text, recipe)
            assert read == balance.Balance(sim.balance, recipe.currency), answer.text
            assert_pound_as_the_charset_holds_it(operator, charset, answer.text)
        assert session.garbage == 0
    finally:
        forwarder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await forwarder
        await session.close()


def assert_pound_as_the_charset_holds_it(
    operator: Operator, charset: str | None, text: str
) -> None:
    if operator.mcc_mnc != "23410":
        return
    if charset == "IRA":
        assert "£" not in text  # ASCII has no '£': the module prints '?'
        assert "?" in text
    else:
        assert "£" in text
