"""tui.safe: untrusted text becomes plain, visible, one-line text."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tui.safe import clean, safe_text


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("[bold]x[/bold]", "[bold]x[/bold]"),  # markup stays text
        ("\x1b[2J\x1b]0;title\x07", "␛[2J␛]0;title␇"),  # CSI, OSC, BEL
        ("a\r\nb\tc\x00", "a␍␊b␉c␀"),
        ("\x9b31m\x7f", "\\x9b31m␡"),  # C1 CSI, DEL
        ("abc\u202edef", "abc\\u202edef"),  # bidi override
        ("Привет 👋 €", "Привет 👋 €"),  # real text is untouched
        (None, ""),
    ],
)
def test_controls_are_made_visible(raw: str | None, shown: str) -> None:
    assert safe_text(raw).plain == shown


def test_newlines_may_be_kept_for_a_detail_view() -> None:
    assert clean("a\nb\x1b", keep_newlines=True) == "a\nb␛"


def test_text_is_never_markup() -> None:
    text = safe_text("[red]danger[/red] [link=http://x]y[/link]")
    assert text.spans == []
    assert text.plain == "[red]danger[/red] [link=http://x]y[/link]"


@given(st.text())
def test_nothing_a_terminal_acts_on_survives(raw: str) -> None:
    shown = safe_text(raw).plain
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in shown)
    assert not any(0x202A <= ord(c) <= 0x202E or 0x2066 <= ord(c) <= 0x2069 for c in shown)
