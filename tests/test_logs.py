"""Logging: one line per record, secrets never written, TRACE per port."""

from __future__ import annotations

import io
import logging

import pytest

from agent import logs


@pytest.fixture
def stream():
    buffer = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield buffer
    root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    logging.getLogger(logs.ROOT).setLevel(logging.NOTSET)
    logging.getLogger(f"{logs.ROOT}.trace").setLevel(logging.NOTSET)


def test_secrets_are_redacted_from_every_logger(stream: io.StringIO) -> None:
    logs.setup("INFO", secrets=["s3cr3t-key", "hook-token-123456"], stream=stream)
    logs.get_logger("uplink").info("calling with Bearer %s", "s3cr3t-key")
    logging.getLogger("httpx").warning("GET /hook?token=hook-token-123456")
    text = stream.getvalue()
    assert "s3cr3t-key" not in text
    assert "hook-token-123456" not in text
    assert text.count("***") == 2


def test_secret_in_a_traceback_is_redacted(stream: io.StringIO) -> None:
    logs.setup("INFO", secrets=["s3cr3t-key"], stream=stream)
    try:
        raise ValueError("bad key s3cr3t-key")
    except ValueError:
        logs.get_logger("uplink").exception("failed")
    assert "s3cr3t-key" not in stream.getvalue()
    assert "ValueError: bad key ***" in stream.getvalue()


def test_one_line_per_record(stream: io.StringIO) -> None:
    logs.setup("INFO", stream=stream)
    logs.get_logger("store").info("sms text: %s", "line one\nINFO simedge.fake: forged")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].endswith("line one\\nINFO simedge.fake: forged")


def test_trace_is_off_by_default_and_switchable_per_port(stream: io.StringIO) -> None:
    logs.setup("DEBUG", stream=stream)
    logs.trace_logger("ttyUSB0").log(logs.TRACE, "-> AT+CSQ")
    assert stream.getvalue() == ""
    logs.set_port_trace("ttyUSB0", True)
    logs.trace_logger("ttyUSB0").log(logs.TRACE, "-> AT+CSQ")
    logs.trace_logger("ttyUSB1").log(logs.TRACE, "-> AT+CREG?")
    assert "TRACE simedge.trace.ttyUSB0: -> AT+CSQ" in stream.getvalue()
    assert "ttyUSB1" not in stream.getvalue()
    logs.set_port_trace("ttyUSB0", False)
    logs.trace_logger("ttyUSB0").log(logs.TRACE, "-> AT+CMGL=4")
    assert "CMGL" not in stream.getvalue()
