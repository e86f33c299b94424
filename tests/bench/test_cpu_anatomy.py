"""bench/cpu_anatomy.py's reading of its figures: the profile hook in a real child process
switched on and off by real signals, the profile it writes grouped by package, and the
split of /proc's per-thread ticks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cpu_anatomy import HOOK, by_function, by_thread, package_of

# A child that, per line on stdin, runs a known number of agent-like calls and answers
# "done"; SIGUSR2 (from the test, between lines) switches the hook's profiler.
CHILD = """
import sys
from agent.protocol.framer import AtFramer
framer = AtFramer()
print("ready", flush=True)
for line in sys.stdin:
    for _ in range(int(line)):
        framer.feed(b"\\r\\nOK\\r\\n")
    print("done", flush=True)
"""


def test_packages_are_named_for_the_folder_a_function_lives_in() -> None:
    venv = "/opt/simedge/venv/lib/python3.11/site-packages"
    assert package_of(f"{venv}/h11/_connection.py") == "h11"
    assert package_of(f"{venv}/peewee.py") == "peewee"
    assert package_of("/opt/simedge/src/agent/uplink/pump.py") == "agent/uplink"
    assert package_of("/srv/agent/clone/agent/clock.py") == "agent/clock"
    assert package_of("/usr/lib/python3.11/asyncio/locks.py") == "stdlib locks"
    assert package_of("~") == "built-in (C)"


def test_the_event_loops_thread_is_told_from_the_others_by_its_id() -> None:
    before = {100: 50, 101: 10, 102: 0}
    after = {100: 150, 101: 30, 102: 0, 103: 5}  # 103 started meanwhile
    threads = by_thread(100, before, after, sms=200)
    tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
    assert threads.loop_ms == pytest.approx(100 * tick_ms / 200)
    assert threads.others_ms == pytest.approx(25 * tick_ms / 200)


def test_the_hook_profiles_only_between_two_signals(tmp_path: Path) -> None:
    out = tmp_path / "steady.prof"
    environment = dict(os.environ, SIMEDGE_BENCH_PROFILE=str(out), PYTHONPATH=str(HOOK))
    environment["PYTHONPATH"] += os.pathsep + str(Path(__file__).resolve().parents[2])
    with subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=environment,
    ) as child:
        assert child.stdin is not None
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"

        def feed(times: int) -> None:
            child.stdin.write(f"{times}\n")
            child.stdin.flush()
            assert child.stdout.readline() == "done\n"

        feed(1000)  # before: not counted
        child.send_signal(signal.SIGUSR2)
        feed(30)
        child.send_signal(signal.SIGUSR2)
        feed(1000)  # after: not counted
        child.stdin.close()
        assert child.wait(timeout=30) == 0
    functions = by_function(out, sms=30, top=1000)
    feeds = [
        calls
        for name, calls, _share in functions.functions
        if name.startswith("agent/protocol: framer.py:") and name.endswith(" feed")
    ]
    assert feeds == [1.0]  # 30 calls in 30 "SMS": the 2,000 outside the signals not counted
    assert "agent/protocol" in {name for name, _calls, _share in functions.packages}
    assert not (tmp_path / "steady.prof.part").exists()
