"""Block rules for confidential SMS (e.g. an operator's account access code).

A message that matches a rule is kept, shown on the dashboard with the rule's name, and
never uploaded: OnlineSim's own documentation asks resellers to hold such messages back.

A rule is a person's regular expression, and a regular expression can backtrack for
minutes on a short SMS (``^(a|aa)+$`` against forty ``a`` and a ``b``). So matching is
bounded (docs/block-rules.md says how, in a person's words):

- Patterns are compiled by the ``regex`` package, whose searches take a ``timeout``; each
  rule gets ``RULE_TIMEOUT`` seconds per SMS for its sender and text together, and the
  search releases the GIL (``concurrent=True``), so the event loop keeps running while
  the store's writer thread matches.
- A rule that runs out of time counts as no match: the SMS is forwarded, because a stuck
  rule must not hold back every SMS of the site. :class:`BlockRules` remembers the rule
  and hands it out once (:meth:`BlockRules.take_timeouts`) for the store to report.
- Patterns are checked where they are added (:func:`pattern_problem`): not empty, at most
  ``MAX_PATTERN_LENGTH`` characters, Python ``re`` syntax (the ``regex`` package's own
  extensions are refused, so a rule means what Python's documentation says), counted
  repetitions that multiply to at most ``MAX_REPEAT_WEIGHT`` (compiling ``(?:a{1000}){1000}``
  holds the GIL for a second), and not matching the empty value (such a rule withholds
  every SMS).
- At most ``MAX_RULES`` rules from the configuration and as many added at run time, so an
  SMS is matched in at most ``2 * MAX_RULES * RULE_TIMEOUT`` seconds even if every rule
  were stuck.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum

import regex

from agent.errors import BlockRuleError
from agent.status import BlockRuleStatus, BlockRuleTrial, RuleSource

RULE_TIMEOUT = 0.05  # seconds one rule may search one SMS (sender and text together)
MAX_PATTERN_LENGTH = 256  # characters of one pattern
MAX_REPEAT_WEIGHT = 1_000  # product of nested counted repetitions, e.g. (?:\d{10}){100}
MAX_RULES = 32  # rules from the configuration; as many again added at run time

PREVIEW_MESSAGES = 200  # stored SMS a new rule is tried on before it is added
PREVIEW_BUDGET = 1.0  # seconds that trial may take in all

CONFIGURED = RuleSource.CONFIG  # in the configuration file: edit the file to remove it
ADDED = RuleSource.ADDED  # added at run time (dashboard, control socket, CLI): in the database

# A counted repetition {m}, {m,}, {,n} or {m,n}; a brace that is not one is a literal.
_COUNTED = re.compile(r"\{(\d*)(?:,(\d*))?\}")


class _BareBrace(Exception):
    """A ``{`` that is not a counted repetition: a literal to Python's re, but the start
    of a fuzzy match (``{e<=1}``) to the regex package. Refused, so no rule means one
    thing in the documentation and another when it runs."""


def _repeat_weight(pattern: str) -> int:
    """The largest product of nested counted repetitions: how many copies of an atom the
    compiler may unroll. A scan of the pattern's text, not a parse: escapes and character
    classes are skipped, groups nest, ``{m,n}`` multiplies the atom (or group) before it.
    Raises _BareBrace at a brace that is not a repetition."""
    group_max = [1]  # per open group: the largest weight inside it so far
    previous = 1  # weight of the atom just read (a closed group carries its inside's)
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            if pattern.startswith("N{", i + 1):  # \N{NAME}: one character, named
                closing = pattern.find("}", i)
                i = len(pattern) if closing < 0 else closing + 1
            else:
                i += 2
            previous = 1
        elif char == "[":
            end = i + 1
            if end < len(pattern) and pattern[end] == "^":
                end += 1
            if end < len(pattern) and pattern[end] == "]":
                end += 1  # a ']' first in a class is a literal
            while end < len(pattern) and pattern[end] != "]":
                end += 2 if pattern[end] == "\\" else 1
            previous, i = 1, end + 1
        elif char == "(":
            group_max.append(1)
            previous, i = 1, i + 1
        elif char == ")":
            inner = group_max.pop() if len(group_max) > 1 else 1
            group_max[-1] = max(group_max[-1], inner)
            previous, i = inner, i + 1
        elif char == "{":
            counted = _COUNTED.match(pattern, i)
            if counted is None or not any(counted.groups()):
                raise _BareBrace
            bound = max(int(number) for number in counted.groups() if number)
            previous = previous * max(bound, 1)
            group_max[-1] = max(group_max[-1], previous)
            i = counted.end()
        else:
            previous, i = 1, i + 1
    return max(group_max)


def pattern_problem(pattern: object) -> str | None:
    """What is wrong with a block rule's pattern, in a person's words, or None.

    Only the text is checked here, in microseconds, before anything compiles it."""
    if not isinstance(pattern, str):
        return f"must be a string, not {type(pattern).__name__}"
    if not pattern.strip():
        return "is empty (leave the field out to match any value)"
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"is {len(pattern)} characters long (at most {MAX_PATTERN_LENGTH})"
    try:
        weight = _repeat_weight(pattern)
    except _BareBrace:
        return "has a { that is not a counted repetition such as {3} or {2,5} (write \\{)"
    if weight > MAX_REPEAT_WEIGHT:
        return (
            f"has counted repetitions that multiply to {weight:,}"
            f" (at most {MAX_REPEAT_WEIGHT:,}): write + or * instead"
        )
    try:
        re.compile(pattern)
    except re.error as exc:
        try:
            regex.compile(pattern)
        except regex.error:
            return f"is not a regular expression: {exc}"
        return f"uses syntax outside Python's re module, which block rules do not support: {exc}"
    except (OverflowError, RecursionError) as exc:
        return f"is too complex to compile: {exc}"
    try:
        empty = regex.compile(pattern).search("", timeout=RULE_TIMEOUT)
    except TimeoutError:
        return "takes too long to try on an empty value"
    if empty is not None:
        return "matches an empty value, so it matches every SMS (leave the field out instead)"
    return None


class Outcome(Enum):
    MATCH = "match"
    NO_MATCH = "no match"
    TIMED_OUT = "timed out"  # counts as no match


@dataclass(frozen=True)
class BlockRule:
    """Block a message whose sender and/or text match: both patterns when both are given.

    Patterns are Python regular expressions searched anywhere in the value (anchor them
    with ``^...$`` to match whole); write ``(?i)`` for case-insensitive. Checked and
    compiled once, here, so a bad pattern fails where it is added, naming the rule.
    ``source`` says where the rule lives: ``CONFIGURED`` or ``ADDED``."""

    name: str
    sender: str | None = None
    text: str | None = None
    source: RuleSource = RuleSource.ADDED
    _sender: regex.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _text: regex.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise BlockRuleError(repr(self.name), "name", "is empty: give the rule a name")
        if len(self.name) > MAX_PATTERN_LENGTH:
            raise BlockRuleError(
                self.name[:40] + "…", "name", f"is longer than {MAX_PATTERN_LENGTH} characters"
            )
        if self.sender is None and self.text is None:
            raise BlockRuleError(self.name, None, "give a sender or a text pattern")
        for part in ("sender", "text"):
            pattern = getattr(self, part)
            problem = None if pattern is None else pattern_problem(pattern)
            if problem:
                raise BlockRuleError(self.name, part, problem)
            compiled = None if pattern is None else regex.compile(pattern)
            object.__setattr__(self, f"_{part}", compiled)

    def match(
        self,
        sender: str,
        text: str,
        timeout: float = RULE_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> Outcome:
        """Whether this rule blocks the message, trying for at most ``timeout`` seconds."""
        deadline = clock() + timeout
        try:
            for compiled, value in ((self._sender, sender), (self._text, text)):
                if compiled is None:
                    continue
                left = deadline - clock()
                if left <= 0:
                    return Outcome.TIMED_OUT
                if compiled.search(value, timeout=left, concurrent=True) is None:
                    return Outcome.NO_MATCH
        except TimeoutError:
            return Outcome.TIMED_OUT
        return Outcome.MATCH

    def status(self, *, timing_out: bool) -> BlockRuleStatus:
        return BlockRuleStatus(self.name, self.source, self.sender, self.text, timing_out)


class BlockRules:
    """The rules in force, shared by the event loop (which adds and removes rules) and the
    store's writer thread (which matches): the tuple is replaced whole, never changed in
    place, so the writer always sees one consistent set."""

    def __init__(self, rules: Iterable[BlockRule] = ()) -> None:
        self._rules = tuple(rules)
        self._lock = threading.Lock()
        self._timed_out: list[BlockRule] = []  # not yet handed out by take_timeouts
        self._seen_timing_out: set[BlockRule] = set()  # each reported once

    @property
    def rules(self) -> tuple[BlockRule, ...]:
        return self._rules

    def get(self, name: str) -> BlockRule | None:
        return next((rule for rule in self._rules if rule.name == name), None)

    def add(self, rule: BlockRule) -> None:
        self._rules += (rule,)

    def remove(self, name: str) -> None:
        self._rules = tuple(rule for rule in self._rules if rule.name != name)

    def count(self, source: RuleSource) -> int:
        return sum(1 for rule in self._rules if rule.source == source)

    def first_match(self, sender: str, text: str) -> str | None:
        """The name of the first rule that blocks this message, or None. A rule that runs
        out of time is skipped (and remembered, to be reported once)."""
        for rule in self._rules:
            outcome = rule.match(sender, text)
            if outcome is Outcome.MATCH:
                return rule.name
            if outcome is Outcome.TIMED_OUT:
                with self._lock:
                    if rule not in self._seen_timing_out:
                        self._seen_timing_out.add(rule)
                        self._timed_out.append(rule)
        return None

    def timing_out(self, rule: BlockRule) -> bool:
        """Whether this rule has run out of time on an SMS since the agent started."""
        with self._lock:
            return rule in self._seen_timing_out

    def take_timeouts(self) -> list[BlockRule]:
        """Rules that ran out of time for the first time since the last call."""
        with self._lock:
            taken, self._timed_out = self._timed_out, []
        return taken


@dataclass(frozen=True)
class Preview:
    """What a rule would have done to the last stored SMS: ``withheld`` of ``checked``;
    ``timed_out`` of them took too long (counted as not withheld); ``stored`` is how many
    were asked for, more than ``checked`` when the time budget ran out first."""

    withheld: int
    checked: int
    timed_out: int
    stored: int

    @property
    def withholds_most(self) -> bool:
        """More than half: such a rule is added only when a person confirms it."""
        return self.withheld * 2 > self.checked

    def describe(self) -> str:
        text = f"would have withheld {self.withheld} of the last {self.checked} SMS"
        if self.timed_out:
            text += f" ({self.timed_out} took too long and count as not withheld)"
        if self.checked < self.stored:
            text += f"; time ran out after {self.checked} of {self.stored}"
        return text

    def to_status(self) -> BlockRuleTrial:
        return BlockRuleTrial(
            withheld=self.withheld,
            checked=self.checked,
            timed_out=self.timed_out,
            stored=self.stored,
            withholds_most=self.withholds_most,
            summary=self.describe(),
        )


def preview(
    rule: BlockRule,
    messages: Iterable[tuple[str, str]],
    *,
    budget: float = PREVIEW_BUDGET,
    clock: Callable[[], float] = time.monotonic,
) -> Preview:
    """Try ``rule`` on stored (sender, text) pairs, newest first, within ``budget`` seconds."""
    deadline = clock() + budget
    withheld = checked = timed_out = stored = 0
    for sender, text in messages:
        stored += 1
        left = deadline - clock()
        if left <= 0:
            continue
        outcome = rule.match(sender, text, timeout=min(RULE_TIMEOUT, left), clock=clock)
        checked += 1
        withheld += outcome is Outcome.MATCH
        timed_out += outcome is Outcome.TIMED_OUT
    return Preview(withheld=withheld, checked=checked, timed_out=timed_out, stored=stored)
