"""Logging: one logger tree under ``simedge``, one line per record on stderr.

- Under systemd (``JOURNAL_STREAM`` set) journald stamps the time, so lines carry none;
  elsewhere each line starts with the time.
- TRACE (below DEBUG) carries raw AT traffic; it is off unless asked for, per port:
  ``trace_logger(port)`` is the logger of one port's traffic, and ``set_port_trace`` turns
  it on or off at run time without touching the rest of the tree.
- Secrets (API key, webhook token) are replaced by ``***`` in every record, whatever
  logger or library wrote it: the filter sits on the handler, not on our loggers.
- A record that spans lines (a traceback, an SMS text) is folded onto one line, so one
  record is one journal entry and nothing can forge a log line.
- Lines that an outsider or a broken modem can cause at will (malformed webhook requests,
  URC floods, the same modem error again and again) go through a :class:`LogLimiter`: a
  few lines per source, then one summary per minute, so that nobody can fill the journal
  (journald drops a unit's lines past its rate limit, ours included).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TextIO

ROOT = "simedge"
TRACE = 5
logging.addLevelName(TRACE, "TRACE")


def get_logger(name: str) -> logging.Logger:
    """The logger ``simedge.<name>``."""
    return logging.getLogger(f"{ROOT}.{name}")


def trace_logger(port: str) -> logging.Logger:
    """The logger of one port's raw AT traffic (``simedge.trace.<port>``)."""
    return logging.getLogger(f"{ROOT}.trace.{port.replace('.', '_')}")


def set_port_trace(port: str, enabled: bool) -> None:
    trace_logger(port).setLevel(TRACE if enabled else logging.NOTSET)


class RedactingFilter(logging.Filter):
    """Replaces every known secret with ``***`` in the final message."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = tuple(s for s in secrets if s)

    def add(self, secret: str) -> None:
        if secret and secret not in self._secrets:
            self._secrets += (secret,)

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            message = record.getMessage()
            for secret in self._secrets:
                message = message.replace(secret, "***")
            record.msg, record.args = message, None
            if record.exc_info:
                record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


class OneLineFormatter(logging.Formatter):
    """``LEVEL logger: message`` with newlines folded as ``\\n``."""

    def __init__(self, with_time: bool) -> None:
        fmt = "%(levelname)s %(name)s: %(message)s"
        super().__init__(("%(asctime)s " + fmt) if with_time else fmt)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text.replace("\r", "\\r").replace("\n", "\\n")


def setup(
    level: str = "INFO", secrets: Iterable[str] = (), stream: TextIO | None = None
) -> RedactingFilter:
    """Install the one stderr handler on the root logger; return its redacting filter."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(OneLineFormatter(with_time="JOURNAL_STREAM" not in os.environ))
    redactor = RedactingFilter(secrets)
    handler.addFilter(redactor)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    simedge = logging.getLogger(ROOT)
    simedge.setLevel(TRACE if level.upper() == "TRACE" else level.upper())
    if level.upper() != "TRACE":
        # Raw AT traffic only where asked for, even at DEBUG.
        logging.getLogger(f"{ROOT}.trace").setLevel(logging.DEBUG + 1)
    return redactor


# What one LogLimiter lets through (see docs/bounds.md). journald drops every line of the
# unit past its rate limit (deploy/journald/simedge.conf: 20,000 per 30 s); these keep
# one noisy source, or many, far from that.
LINES_PER_SOURCE = 3  # lines of one (kind, source) per window before it is only counted
LINES_PER_KIND = 10  # lines of one kind per window, all sources together
SUMMARY_WINDOW = 60.0  # seconds; one summary line per counted (kind, source) per window
MAX_SOURCES = 1024  # (kind, source) keys held at once; the oldest window gives way first
OTHER_SOURCES = "other sources"


@dataclass
class _Window:
    started: float
    lines: int = 0  # logged one by one
    counted: int = 0  # suppressed, to be summarised


class LogLimiter:
    """Rate-limits log lines per ``(kind, source)`` with a summary line.

    The first ``per_source`` lines of a source in a window are logged as they come, and at
    most ``per_kind`` lines of one kind in a window whatever their source (so that a flood
    from many addresses is held too: those beyond it are counted under "other sources").
    The rest are counted, and when the window ends one line says how many there were::

        2,031 malformed requests from 203.0.113.7 in the last minute (3 logged)

    ``kind`` is the plural noun phrase of that summary. Memory is bounded: at most
    ``max_sources`` keys; a window that has to give way early is summarised at once.
    Windows are closed by the next call and, inside an event loop, by a timer, so a
    summary comes even when the flood stops. ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        per_source: int = LINES_PER_SOURCE,
        per_kind: int = LINES_PER_KIND,
        window: float = SUMMARY_WINDOW,
        max_sources: int = MAX_SOURCES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.per_source = per_source
        self.per_kind = per_kind
        self.window = window
        self.max_sources = max_sources
        self._clock = clock
        # Ordered by window start: the front is always the first to end.
        self._windows: OrderedDict[tuple[str, str], _Window] = OrderedDict()
        self._kinds: dict[str, _Window] = {}
        self._levels: dict[str, int] = {}
        self._timer: asyncio.TimerHandle | None = None

    @property
    def sources(self) -> int:
        """(kind, source) windows held now: what ``max_sources`` bounds."""
        return len(self._windows)

    def warning(self, kind: str, source: str, message: str, *args: Any, **options: Any) -> None:
        options.setdefault("stacklevel", 3)  # the record's place is our caller's
        self.log(logging.WARNING, kind, source, message, *args, **options)

    def error(self, kind: str, source: str, message: str, *args: Any, **options: Any) -> None:
        options.setdefault("stacklevel", 3)
        self.log(logging.ERROR, kind, source, message, *args, **options)

    def log(
        self, level: int, kind: str, source: str, message: str, *args: Any, **options: Any
    ) -> None:
        """Log ``message % args`` (``options`` as for ``Logger.log``, e.g. ``exc_info``)
        if the budget of ``kind`` and ``source`` allows, else count it for the summary."""
        now = self._clock()
        self.close_windows(now)
        self._levels[kind] = max(level, self._levels.get(kind, level))
        total = self._kinds.get(kind)
        if total is None or now - total.started >= self.window:
            total = self._kinds[kind] = _Window(now)
        key = (kind, source)
        if key not in self._windows and total.lines >= self.per_kind:
            key = (kind, OTHER_SOURCES)  # no line left for a new source: only counted
        window = self._windows.get(key)
        if window is None:
            while len(self._windows) >= self.max_sources:
                self._summarise(*self._windows.popitem(last=False))
            window = self._windows[key] = _Window(now)
        if window.lines < self.per_source and total.lines < self.per_kind:
            window.lines += 1
            total.lines += 1
            options.setdefault("stacklevel", 2)
            self.logger.log(level, message, *args, **options)
        else:
            window.counted += 1
            self._arm_timer(now)

    def close_windows(self, now: float | None = None) -> None:
        """Summarise and forget every window that has ended by ``now``."""
        now = self._clock() if now is None else now
        while self._windows:
            key, window = next(iter(self._windows.items()))
            if now - window.started < self.window:
                break
            del self._windows[key]
            self._summarise(key, window, now)

    def _summarise(self, key: tuple[str, str], window: _Window, now: float | None = None) -> None:
        if not window.counted:
            return
        kind, source = key
        now = self._clock() if now is None else now
        span = min(now - window.started, self.window)
        if self.window == 60.0 and span >= self.window:
            period = "minute"
        else:
            period = f"{span:.1f} s" if span < 10 else f"{span:.0f} s"
        total = window.lines + window.counted
        logged = f" ({window.lines} logged)" if window.lines else ""
        self.logger.log(
            self._levels.get(kind, logging.WARNING),
            "%s %s from %s in the last %s%s",
            f"{total:,}",
            kind,
            source,
            period,
            logged,
        )

    def _arm_timer(self, now: float) -> None:
        """Close the window by a timer too, so the summary does not wait for the next
        line (there may be none); outside an event loop the next call does it."""
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        first = next(iter(self._windows.values()))
        delay = max(0.0, first.started + self.window - now)
        self._timer = loop.call_later(delay, self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None
        self.close_windows()
        pending = [w for w in self._windows.values() if w.counted]
        if pending:
            self._arm_timer(self._clock())
