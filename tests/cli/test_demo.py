"""`simedge demo` brings the emulated site up with no configuration, and stops cleanly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from agent.cli.demo import READY_PREFIX

ROOT = Path(__file__).resolve().parents[2]


def test_demo_starts_the_standin_and_modems_then_stops(tmp_path: Path) -> None:
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "demo",
            "--modems",
            "2",
            "--unknown-numbers",
            "1",
            "--dir",
            str(tmp_path),
            "--for",
            "30",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert demo.stdout is not None
        first = demo.stdout.readline()  # blocks until the demo says it is ready
        assert first.startswith(READY_PREFIX), first
        rest = [demo.stdout.readline() for _ in range(3)]
        assert "OnlineSim stand-in  http://127.0.0.1:" in rest[0]
        assert "emulated modems     2 x mixed" in rest[1]
        assert "unknown numbers     1 SIMs start without one" in rest[2]
        links = [p for p in (tmp_path / "modems").iterdir() if p.name.endswith("-port0")]
        assert links, "the demo's modems have no ports"
    finally:
        demo.terminate()
        _, err = demo.communicate(timeout=30)
    assert demo.returncode == 0, err
    assert "simedge demo stopped" in err
