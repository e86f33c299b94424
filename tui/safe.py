"""Untrusted text (SMS text, senders, modem strings, agent refusals) made safe to show.

Everything the dashboard shows that came from outside passes through :func:`safe_text`.
It builds a :class:`rich.text.Text` from the plain string, so square brackets are never
read as Rich/Textual markup, and it replaces every character that a terminal would act on
(ESC and the other C0/C1 controls, DEL) or that would reorder what follows (Unicode bidi
overrides) with a visible stand-in: a person sees that an SMS carried ``␛[2J``, and the
terminal over SSH is never cleared, recoloured or retitled by a stranger's message.
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text

# C0 controls become their Unicode "control pictures" (U+2400 + code): ␛ for ESC, ␇ for
# BEL, ␍ for CR. One cell wide each, so table columns keep their widths.
_SUBSTITUTES: dict[int, str] = {code: chr(0x2400 + code) for code in range(0x20)}
_SUBSTITUTES[0x7F] = "␡"
# C1 controls (U+0080..U+009F: CSI 0x9B, OSC 0x9D... on terminals that honour 8-bit
# controls) and the bidi embedding/override/isolate marks have no pictures: shown escaped.
for _code in (*range(0x80, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)):
    _SUBSTITUTES[_code] = f"\\u{_code:04x}" if _code > 0xFF else f"\\x{_code:02x}"
_NEWLINE_KEPT = {code: chr(code) for code in (0x0A,)}


def clean(value: object, *, keep_newlines: bool = False) -> str:
    """The string form of ``value`` with every control character made visible."""
    text = "" if value is None else str(value)
    table = _SUBSTITUTES | _NEWLINE_KEPT if keep_newlines else _SUBSTITUTES
    return text.translate(table)


def safe_text(value: object, style: str | Style = "", *, keep_newlines: bool = False) -> Text:
    """A Rich ``Text`` that shows ``value`` literally: never markup, never an escape."""
    return Text(clean(value, keep_newlines=keep_newlines), style=style, no_wrap=not keep_newlines)
