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
- Patterns are checked where they are added (:func:`pattern_problem`, the checks of
  :mod:`agent.patterns` that every pattern from a person passes): not empty, at most
  ``MAX_PATTERN_LENGTH`` characters, Python ``re`` syntax, counted repetitions that
  multiply to at most ``MAX_REPEAT_WEIGHT``, and not matching the empty value (such a
  rule withholds every SMS).
- At most ``MAX_RULES`` rules from the configuration and as many added at run time, so an
  SMS is matched in at most ``2 * MAX_RULES * RULE_TIMEOUT`` seconds even if every rule
  were stuck.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum

import regex

from agent import patterns
from agent.errors import BlockRuleError
from agent.patterns import MAX_PATTERN_LENGTH
from agent.patterns import SEARCH_TIMEOUT as RULE_TIMEOUT
from agent.status import BlockRuleStatus, BlockRuleTrial, RuleSource

MAX_RULES = 32  # rules from the configuration; as many again added at run time

PREVIEW_MESSAGES = 200  # stored SMS a new rule is tried on before it is added
PREVIEW_BUDGET = 1.0  # seconds that trial may take in all

CONFIGURED = RuleSource.CONFIG  # in the configuration file: edit the file to remove it
ADDED = RuleSource.ADDED  # added at run time (dashboard, control socket, CLI): in the database


def pattern_problem(pattern: object) -> str | None:
    """What is wrong with a block rule's pattern, in a person's words, or None."""
    return patterns.pattern_problem(
        pattern,
        empty_means="so it matches every SMS (leave the field out instead)",
        blank="is empty (leave the field out to match any value)",
    )


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
