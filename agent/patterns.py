"""Regular expressions a person writes (block rules, operators' USSD answers), bounded.

A regular expression can backtrack for minutes on a short text (``^(a|aa)+$`` against
forty ``a`` and a ``b``), and compiling ``(?:a{1000}){1000}`` holds the GIL for a
second. So a pattern from a person is checked where it enters (:func:`pattern_problem`):
not empty, at most ``MAX_PATTERN_LENGTH`` characters, Python ``re`` syntax (the ``regex``
package's own extensions are refused, so a pattern means what Python's documentation
says), counted repetitions that multiply to at most ``MAX_REPEAT_WEIGHT``, and not
matching the empty text. It is then searched by the ``regex`` package with a timeout of
``SEARCH_TIMEOUT`` seconds (docs/block-rules.md, docs/bounds.md).
"""

from __future__ import annotations

import re

import regex

SEARCH_TIMEOUT = 0.05  # seconds one pattern may search one text (a block rule: one SMS)
MAX_PATTERN_LENGTH = 256  # characters of one pattern
MAX_REPEAT_WEIGHT = 1_000  # product of nested counted repetitions, e.g. (?:\d{10}){100}

# A counted repetition {m}, {m,}, {,n} or {m,n}; a brace that is not one is a literal.
_COUNTED = re.compile(r"\{(\d*)(?:,(\d*))?\}")


class _BareBrace(Exception):
    """A ``{`` that is not a counted repetition: a literal to Python's re, but the start
    of a fuzzy match (``{e<=1}``) to the regex package. Refused, so no pattern means one
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


def pattern_problem(
    pattern: object,
    *,
    empty_means: str = "so it matches every text",
    blank: str = "is empty",
) -> str | None:
    """What is wrong with ``pattern``, in a person's words, or None. ``empty_means`` says
    what matching the empty text would do; ``blank`` what an empty pattern is.

    Only the text is checked here, in microseconds, before anything compiles it."""
    if not isinstance(pattern, str):
        return f"must be a string, not {type(pattern).__name__}"
    if not pattern.strip():
        return blank
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
        return f"uses syntax outside Python's re module, which is not supported here: {exc}"
    except (OverflowError, RecursionError) as exc:
        return f"is too complex to compile: {exc}"
    try:
        empty = regex.compile(pattern).search("", timeout=SEARCH_TIMEOUT)
    except TimeoutError:
        return "takes too long to try on an empty value"
    if empty is not None:
        return f"matches an empty value, {empty_means}"
    return None
