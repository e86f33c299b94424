"""The control schema itself: one request class per operation, each read back as sent, and
every side handling every operation once."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import fields

import pytest

from agent.control.block_rules import BlockRuleOps
from agent.control.protocol import (
    ENVELOPE,
    EVENT_DATA,
    REQUESTS,
    AddBlockRule,
    EventKind,
    ListMessages,
    Op,
    Request,
    ResetModem,
    Retry,
    SetNumber,
    SharedResult,
    ShowMessage,
    TakeSnapshot,
    Trace,
    encode,
    encode_answer,
    encode_request,
    handled_ops,
    handler_table,
    handles,
    parse_request,
)
from agent.errors import ControlError
from agent.supervisor import Agent
from tests.tui.site import SiteStandIn, demo_site

SAMPLES: list[Request[object]] = [
    ListMessages(limit=5, query="+7916", before=40),
    ShowMessage(7),
    ResetModem("1-1.2"),
    SetNumber("8970", "+79161234567"),
    Trace("1-1.2", on=False),
    AddBlockRule("bank", sender="^Bank$", text=None, force=True),
    Retry(message_id=3),
    Retry(all_dead=True),
    *(cls() for cls in REQUESTS.values() if not fields(cls)),  # type: ignore[arg-type]
]


def test_every_operation_and_event_is_declared_once() -> None:
    assert set(REQUESTS) == set(Op)
    assert set(EVENT_DATA) == set(EventKind)
    for op, cls in REQUESTS.items():
        assert cls.OP is op
        clashing = {item.name for item in fields(cls)} & set(ENVELOPE)  # type: ignore[arg-type]
        assert not clashing, f"{cls.__name__} has an argument named like the envelope"


def test_a_second_request_class_for_one_op_is_refused_at_once() -> None:
    with pytest.raises(TypeError, match="op rescan is already Rescan"):

        class AnotherRescan(Request[str], op=Op.RESCAN):
            pass


@pytest.mark.parametrize("request_", SAMPLES, ids=lambda r: type(r).__name__)
def test_a_request_is_read_back_as_it_was_sent(request_: Request[object]) -> None:
    request_id, parsed = parse_request(encode_request(41, request_))
    assert (request_id, parsed) == (41, request_)


def test_a_retry_needs_one_target() -> None:
    with pytest.raises(ValueError, match="give message_id or all_dead"):
        Retry()
    with pytest.raises(ControlError, match="retry: give message_id or all_dead"):
        parse_request(b'{"op": "retry", "message_id": 3, "all_dead": true}')


@pytest.mark.parametrize(
    ("handlers", "name"),
    [((Agent, BlockRuleOps), "the agent"), ((SiteStandIn,), "the dashboard tests' stand-in")],
)
def test_every_operation_has_exactly_one_handler(handlers: tuple[type, ...], name: str) -> None:
    """Subscribe is the server's own; every other op is served, once, by each side."""
    served = Counter(handled_ops(*handlers))
    assert set(served) == set(Op) - {Op.SUBSCRIBE}, f"{name} misses ops"
    assert set(served.values()) == {1}, f"{name} handles an op twice"


def test_two_handlers_for_one_op_are_refused() -> None:
    class First:
        @handles(ResetModem)
        async def reset(self, request: ResetModem) -> str:
            return "first"

    class Second:
        @handles(ResetModem)
        async def reset_too(self, request: ResetModem) -> str:
            return "second"

    with pytest.raises(TypeError, match="op reset_modem is handled twice"):
        handler_table(First(), Second())


@pytest.mark.parametrize("request_id", [1, None, 'a "quoted" id', [1, {"x": 2}]])
def test_an_answer_line_is_the_envelope_with_the_result_spliced_in(request_id: object) -> None:
    snapshot = demo_site(slots=2)
    expected = encode({"id": request_id, "ok": True, "result": snapshot.to_json()})
    assert encode_answer(request_id, TakeSnapshot(), snapshot) == expected
    assert encode_answer(request_id, TakeSnapshot(), snapshot, SharedResult()) == expected


def test_clients_answered_one_snapshot_share_its_json() -> None:
    """Every client waiting on one coalesced snapshot gets the same object: its JSON is
    made once (13 ms for 128 modems), not once per client."""
    shared = SharedResult()
    snapshot = demo_site(slots=2)
    first = shared.json(snapshot)
    assert shared.json(snapshot) is first  # the same object: the same bytes, not remade
    newer = dataclasses.replace(snapshot, taken_at=snapshot.taken_at + 1)
    assert shared.json(newer) is not first
    assert json.loads(shared.json(newer))["taken_at"] == snapshot.taken_at + 1
