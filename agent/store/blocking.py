"""Block rules for confidential SMS (e.g. an operator's account access code).

A message that matches a rule is kept, shown on the dashboard with the rule's name, and
never uploaded: OnlineSim's own documentation asks resellers to hold such messages back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from agent.errors import ConfigError


def _compile(rule: str, part: str, pattern: str | re.Pattern[str] | None) -> re.Pattern[str] | None:
    if pattern is None or isinstance(pattern, re.Pattern):
        return pattern
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(
            "configuration", f"block rule {rule!r} {part}", f"not a regular expression: {exc}"
        ) from exc


@dataclass(frozen=True)
class BlockRule:
    """Block a message whose sender and/or text match: both patterns when both are given.

    Patterns are Python regular expressions searched anywhere in the value (anchor them
    with ``^...$`` to match whole); write ``(?i)`` for case-insensitive. Compiled once,
    here, so a bad pattern fails at start, naming the rule."""

    name: str
    sender: str | re.Pattern[str] | None = None
    text: str | re.Pattern[str] | None = None
    _sender: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _text: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.sender is None and self.text is None:
            raise ConfigError(
                "configuration", f"block rule {self.name!r}", "give a sender or a text pattern"
            )
        object.__setattr__(self, "_sender", _compile(self.name, "sender", self.sender))
        object.__setattr__(self, "_text", _compile(self.name, "text", self.text))

    def matches(self, sender: str, text: str) -> bool:
        if self._sender is not None and not self._sender.search(sender):
            return False
        return self._text is None or bool(self._text.search(text))


def first_match(rules: Iterable[BlockRule], sender: str, text: str) -> str | None:
    """The name of the first rule that blocks this message, or None."""
    for rule in rules:
        if rule.matches(sender, text):
            return rule.name
    return None
