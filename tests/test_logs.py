"""Logging: one line per record, secrets never written, TRACE per port."""

from __future__ import annotations

import asyncio
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


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def limited() -> tuple[logs.LogLimiter, list[str], Clock]:
    """A limiter on a logger of its own, its lines captured, its clock in the test's hand."""
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("simedge.test-limiter")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    capture = Capture()
    logger.addHandler(capture)
    clock = Clock()
    yield logs.LogLimiter(logger, clock=clock), lines, clock
    logger.removeHandler(capture)


def test_a_flood_from_one_source_gives_a_few_lines_then_one_summary(limited) -> None:
    limiter, lines, clock = limited
    for n in range(2031):
        limiter.warning("malformed requests", "203.0.113.7", "bad request %d from %s", n, "x")
        clock.now += 0.01  # 2,031 requests in 20 s
    assert lines == [f"bad request {n} from x" for n in range(logs.LINES_PER_SOURCE)]
    clock.now += logs.SUMMARY_WINDOW
    limiter.close_windows()
    assert lines[-1] == (
        f"2,031 malformed requests from 203.0.113.7 in the last minute "
        f"({logs.LINES_PER_SOURCE} logged)"
    )
    assert len(lines) == logs.LINES_PER_SOURCE + 1
    # A new window: the source may log again.
    limiter.warning("malformed requests", "203.0.113.7", "bad again")
    assert lines[-1] == "bad again"


def test_sources_and_kinds_are_counted_apart(limited) -> None:
    limiter, lines, clock = limited
    for _ in range(10):
        limiter.warning("malformed requests", "203.0.113.7", "a")
        limiter.warning("malformed requests", "198.51.100.1", "b")
        limiter.warning("URCs dropped (queue full)", "203.0.113.7", "c")
    assert lines.count("a") == lines.count("b") == lines.count("c") == logs.LINES_PER_SOURCE
    clock.now += logs.SUMMARY_WINDOW
    limiter.close_windows()
    assert sorted(lines[-3:]) == sorted(
        [
            "10 malformed requests from 203.0.113.7 in the last minute (3 logged)",
            "10 malformed requests from 198.51.100.1 in the last minute (3 logged)",
            "10 URCs dropped (queue full) from 203.0.113.7 in the last minute (3 logged)",
        ]
    )


def test_a_source_under_its_budget_gets_no_summary(limited) -> None:
    limiter, lines, clock = limited
    limiter.error("modem errors", "1-1.2", "one error")
    clock.now += logs.SUMMARY_WINDOW * 2
    limiter.close_windows()
    assert lines == ["one error"]
    assert limiter.sources == 0


def test_100000_sources_hold_bounded_memory_and_lines(limited) -> None:
    limiter, lines, clock = limited
    for n in range(100_000):
        address = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
        limiter.warning("malformed requests", address, "bad request from %s", address)
        clock.now += 0.0005  # 100,000 sources in 50 s: one window
        assert limiter.sources <= logs.MAX_SOURCES
    # Only the first LINES_PER_KIND sources got a line; the rest are one count.
    assert len(lines) == logs.LINES_PER_KIND
    assert limiter.sources == logs.LINES_PER_KIND + 1
    clock.now += logs.SUMMARY_WINDOW
    limiter.close_windows()
    assert lines[-1] == "99,990 malformed requests from other sources in the last minute"
    assert limiter.sources == 0


def test_the_key_bound_holds_when_every_source_keeps_its_window(limited) -> None:
    limiter, lines, clock = limited
    limiter = logs.LogLimiter(limiter.logger, per_kind=10**9, max_sources=100, clock=clock)
    for n in range(10_000):
        limiter.warning("malformed requests", f"source {n}", "bad")
        limiter.warning("malformed requests", f"source {n}", "bad")
        assert limiter.sources <= 100
    # Each source stayed within its lines: nothing to summarise when its window gave way.
    assert not [line for line in lines if "in the last" in line]
    for _ in range(4):
        limiter.warning("malformed requests", "source 9999", "bad")
    for n in range(200):
        limiter.warning("malformed requests", f"late {n}", "bad")
    # A window that gives way early with lines counted is summarised at once, not lost.
    assert "6 malformed requests from source 9999 in the last 0.0 s (3 logged)" in lines
    assert limiter.sources <= 100


async def test_the_summary_comes_when_the_flood_stops(limited) -> None:
    limiter, lines, _ = limited
    loop = asyncio.get_running_loop()
    # The timer is the event loop's, so this limiter runs on the loop's clock, with a
    # window short enough to wait for.
    limiter = logs.LogLimiter(limiter.logger, window=0.05, clock=loop.time)
    summary = asyncio.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "in the last" in record.getMessage():
                summary.set()

    watch = Watch()
    limiter.logger.addHandler(watch)
    try:
        for _ in range(5):
            limiter.warning("URCs dropped (queue full)", "ttyUSB0", "dropped")
        async with asyncio.timeout(5):
            await summary.wait()  # no further call: the timer closed the window
    finally:
        limiter.logger.removeHandler(watch)
    assert lines[-1].startswith("5 URCs dropped (queue full) from ttyUSB0 in the last 0")
    assert lines[-1].endswith(" s (3 logged)")
