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
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from typing import TextIO

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
