"""SIMEDGE_TEST_SLOWDOWN: native runs keep their limits; a bad value is refused by name."""

from __future__ import annotations

import pytest

from tests.slowdown import MAX_SLOWDOWN, VARIABLE, process_limit, slowdown


def test_unset_or_empty_keeps_the_native_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VARIABLE, raising=False)
    assert slowdown() == 1.0
    assert process_limit(30) == 30
    monkeypatch.setenv(VARIABLE, "")
    assert process_limit(30) == 30


def test_a_factor_multiplies_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VARIABLE, "6")
    assert process_limit(30) == 180
    monkeypatch.setenv(VARIABLE, str(MAX_SLOWDOWN))
    assert process_limit(2) == 2 * MAX_SLOWDOWN


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        ("fast", "not a number"),
        ("nan", "must be from 1 to 10"),
        ("0.5", "must be from 1 to 10"),
        ("11", "must be from 1 to 10"),
        ("inf", "must be from 1 to 10"),
    ],
)
def test_a_bad_value_names_the_variable_and_the_fault(
    monkeypatch: pytest.MonkeyPatch, raw: str, complaint: str
) -> None:
    monkeypatch.setenv(VARIABLE, raw)
    with pytest.raises(ValueError, match=complaint) as refused:
        slowdown()
    assert str(refused.value).startswith(f"{VARIABLE}={raw!r}: ")
