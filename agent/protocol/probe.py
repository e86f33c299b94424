"""The text of a number probe: the SMS one SIM of the site sends another to learn its own
number (agent.modem.probe), and how the receiving side knows it.

The text carries a one-time token of :data:`TOKEN_LENGTH` characters from the RFC 4648
base32 alphabet (80 random bits): guessing one that is still awaited is hopeless, so an
SMS whose text is a probe text with an unknown token is someone else's SMS and is
forwarded like any other. The text is plain GSM 7-bit, one part, so every module and
network carries it unchanged.
"""

from __future__ import annotations

import re
import secrets

TOKEN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
TOKEN_LENGTH = 16
PROBE_PREFIX = "simedge number check "

# Anchored, fixed-length: the match costs the same whatever text an SMS carries.
_PROBE_TEXT = re.compile(re.escape(PROBE_PREFIX) + f"([{TOKEN_ALPHABET}]{{{TOKEN_LENGTH}}})")


def new_token() -> str:
    """A fresh one-time token (the operating system's randomness)."""
    return "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(TOKEN_LENGTH))


def probe_text(token: str) -> str:
    """The SMS text that carries ``token``; ValueError for a token we never make."""
    text = PROBE_PREFIX + token
    if _PROBE_TEXT.fullmatch(text) is None:
        raise ValueError(f"not a probe token: {token!r}")
    return text


def token_in(text: str) -> str | None:
    """The token when ``text`` is exactly a probe text (surrounding spaces and line ends
    that some networks add are forgiven), else None."""
    if len(text) > len(PROBE_PREFIX) + TOKEN_LENGTH + 8:
        return None
    match = _PROBE_TEXT.fullmatch(text.strip())
    return match.group(1) if match else None
