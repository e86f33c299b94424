"""The probe text: made and recognised exactly, nothing else taken for one."""

from __future__ import annotations

import pytest

from agent.protocol import gsm7
from agent.protocol.probe import TOKEN_ALPHABET, TOKEN_LENGTH, new_token, probe_text, token_in


def test_a_made_token_goes_round_and_the_text_is_one_gsm7_part() -> None:
    tokens = {new_token() for _ in range(200)}
    assert len(tokens) == 200  # 80 random bits: no repeats
    for token in tokens:
        assert len(token) == TOKEN_LENGTH
        assert set(token) <= set(TOKEN_ALPHABET)
        text = probe_text(token)
        assert token_in(text) == token
        units = gsm7.encode_chars(text)
        assert units is not None
        assert len(b"".join(units)) <= 160


def test_network_padding_is_forgiven() -> None:
    token = new_token()
    assert token_in(f"  {probe_text(token)}\r\n") == token


@pytest.mark.parametrize(
    "text",
    [
        "",
        "simedge number check",
        "simedge number check ABCDEFGHIJKLMNO",  # one short
        "simedge number check ABCDEFGHIJKLMNOPQ",  # one long
        "simedge number check abcdefghijklmnop",  # lower case is not ours
        "simedge number check ABCDEFGHIJKLMN01",  # 0 and 1 are not base32
        "Your code: simedge number check ABCDEFGHIJKLMNOP",  # inside another text
        "simedge number check ABCDEFGHIJKLMNOP " + "x" * 10_000,
    ],
)
def test_anything_else_is_an_ordinary_sms(text: str) -> None:
    assert token_in(text) is None


def test_probe_text_refuses_a_token_it_would_not_recognise() -> None:
    with pytest.raises(ValueError, match="not a probe token"):
        probe_text("short")
