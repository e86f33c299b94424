"""Multipart SMS assembly: order, duplicates, expiry, persistence of the waiting state."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.protocol.concat import Assembler, PendingMessage
from agent.protocol.pdu import SmsDeliver, decode, encode_deliver

TS = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def parts(text: str, sender: str = "+79161234567", **kwargs: object) -> list[SmsDeliver]:
    decoded = [decode(pdu) for pdu in encode_deliver(text, sender, timestamp=TS, **kwargs)]
    assert all(isinstance(part, SmsDeliver) for part in decoded)
    return decoded  # type: ignore[return-value]


LONG = "".join(f"w{n:03d} " for n in range(120))  # 600 characters: 4 parts of GSM 7-bit


def test_single_part_sms_passes_straight_through() -> None:
    assembler = Assembler()
    (sms,) = parts("your code is 1234")
    message = assembler.add("sim-a", sms, received_at=10.0)
    assert message is not None
    assert (message.text, message.total, message.ref, message.complete) == (
        "your code is 1234",
        1,
        None,
        True,
    )
    assert (message.sim, message.sender, message.received_at) == ("sim-a", "+79161234567", 10.0)
    assert len(assembler) == 0


def test_parts_out_of_order_and_duplicated_give_one_message() -> None:
    assembler = Assembler()
    first, second, third, fourth = parts(LONG)
    for sms, at in ((third, 1.0), (first, 2.0), (third, 3.0), (fourth, 4.0)):
        assert assembler.add("sim-a", sms, received_at=at) is None
    message = assembler.add("sim-a", second, received_at=5.0)
    assert message is not None
    assert message.text == LONG
    assert (message.total, message.complete, message.received_at) == (4, True, 1.0)
    assert first.concat is not None
    assert message.ref == first.concat.ref
    assert len(assembler) == 0


def test_same_reference_from_other_sims_or_senders_stays_apart() -> None:
    assembler = Assembler()
    ours = parts(LONG, reference=5)
    theirs = parts(LONG.upper(), sender="+4915112345678", reference=5)
    for index in range(3):
        assert assembler.add("sim-a", ours[index], 1.0) is None
        assert assembler.add("sim-b", ours[index], 1.0) is None
        assert assembler.add("sim-a", theirs[index], 1.0) is None
    assert len(assembler) == 3
    message = assembler.add("sim-b", ours[3], 2.0)
    assert message is not None
    assert (message.sim, message.sender, message.text) == ("sim-b", "+79161234567", LONG)
    assert len(assembler) == 2


def test_a_part_arriving_again_after_completion_is_a_duplicate_until_expiry() -> None:
    assembler = Assembler()
    sms_parts = parts(LONG)
    results = [assembler.add("sim-a", sms, 10.0) for sms in sms_parts]
    assert results[-1] is not None
    assert assembler.add("sim-a", sms_parts[0], 20.0) is None
    assert len(assembler) == 0  # no new pending message was started
    assert assembler.expire(now=10.0 + 600, timeout=600) == []
    assert assembler.add("sim-a", sms_parts[0], 700.0) is None
    assert len(assembler) == 1  # after the timeout the same key may be a new message


def test_expire_delivers_what_arrived_and_names_the_missing_parts() -> None:
    assembler = Assembler()
    first, _second, third, _fourth = parts(LONG)
    assembler.add("sim-a", first, received_at=100.0)
    assembler.add("sim-a", third, received_at=130.0)
    assert assembler.expire(now=100.0 + 599, timeout=600) == []
    (message,) = assembler.expire(now=100.0 + 600, timeout=600)
    assert not message.complete
    assert message.missing == (2, 4)
    assert message.text == first.text + third.text
    assert message.received_at == 100.0
    assert len(assembler) == 0


def test_expire_returns_oldest_first() -> None:
    assembler = Assembler()
    newer = parts(LONG, reference=1)
    older = parts(LONG, reference=2)
    assembler.add("sim-a", newer[0], received_at=50.0)
    assembler.add("sim-a", older[0], received_at=10.0)
    assert [message.ref for message in assembler.expire(now=1000.0, timeout=60)] == [2, 1]


def test_pending_state_is_plain_data_that_rebuilds_the_assembler() -> None:
    assembler = Assembler()
    first, second, third, fourth = parts(LONG)
    assembler.add("sim-a", fourth, received_at=1.0)
    assembler.add("sim-a", first, received_at=2.0)
    (saved,) = assembler.pending()
    assert isinstance(saved, PendingMessage)
    assert (saved.sim, saved.sender, saved.total, sorted(saved.parts)) == (
        "sim-a",
        "+79161234567",
        4,
        [1, 4],
    )
    assert saved.missing == (2, 3)
    # What a store would write: only plain values (str, int, float, bytes, datetime).
    for part in saved.parts.values():
        for value in dataclasses.astuple(part):
            assert isinstance(value, str | int | float | bytes | datetime)
    saved.parts.clear()  # the copy is the caller's: the assembler keeps its own
    restored = Assembler(assembler.pending())
    assert restored.add("sim-a", second, received_at=3.0) is None
    message = restored.add("sim-a", third, received_at=4.0)
    assert message is not None
    assert message.text == LONG


def test_ucs2_parts_are_joined_before_decoding_to_repair_a_split_surrogate_pair() -> None:
    # Some senders cut an emoji's surrogate pair between two parts: each part alone is
    # damaged, the joined octets are not.
    text = "ж" * 66 + "😀" + "ж" * 10
    whole = text.encode("utf-16-be")
    cut = 134  # octets in part 1: the first surrogate of the emoji ends it
    template = parts("ж" * 100)
    one = dataclasses.replace(template[0], data=whole[:cut], text="ignored", text_damaged=True)
    two = dataclasses.replace(template[1], data=whole[cut:], text="ignored", text_damaged=True)
    assembler = Assembler()
    assert assembler.add("sim-a", two, 1.0) is None
    message = assembler.add("sim-a", one, 2.0)
    assert message is not None
    assert message.text == text


@settings(max_examples=40)
@given(st.randoms(use_true_random=False), st.integers(1, 3))
def test_any_arrival_order_with_repeats_assembles_once(rng: random.Random, repeats: int) -> None:
    sms_parts = parts(LONG, ref_bits=16)
    arrivals = [part for part in sms_parts for _ in range(repeats)]
    rng.shuffle(arrivals)
    assembler = Assembler()
    results = [assembler.add("sim-a", sms, float(n)) for n, sms in enumerate(arrivals)]
    completed = [message for message in results if message is not None]
    assert [message.text for message in completed] == [LONG]
    assert len(assembler) == 0
