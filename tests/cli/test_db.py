"""`simedge db check|recover` and `simedge run` on real damaged database files."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from agent.control.server import ControlServer
from tests.locks_helpers import HOLD_DATA_DIR, holder
from tests.store.test_store_integrity import MESSAGES, damage_page, fill

SIMEDGE = Path(sys.executable).with_name("simedge")


def run_agent(config: Path) -> subprocess.CompletedProcess[str]:
    """`simedge run` in a process of its own, as systemd starts it (it sets up logging for
    the whole process, which a test must not do to the test runner)."""
    return subprocess.run(
        [str(SIMEDGE), "run", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_check_says_ok_of_a_whole_database(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(config.parent / "data" / "simedge.db", 20)
    assert main(["db", "check", "--config", str(config)]) == 0
    assert ": ok (integrity_check" in capsys.readouterr().out


def test_check_recover_and_start_again(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = config.parent / "data" / "simedge.db"
    fill(db)
    page = damage_page(db)

    # The agent refuses the file, with exit 2 (no restart loop under systemd).
    agent = run_agent(config)
    assert agent.returncode == 2
    refused = agent.stderr
    assert str(db) in refused
    assert "simedge db recover" in refused

    assert main(["db", "check", "--config", str(config)]) == 1
    checked = capsys.readouterr().out
    assert "damaged" in checked
    assert f"Page {page}" in checked or "malformed" in checked

    assert main(["db", "recover", "--config", str(config)]) == 0
    recovered = capsys.readouterr().out
    kept = list(db.parent.glob("simedge.db.damaged-*Z"))  # with its -wal and -shm
    assert len(kept) == 1
    assert f"damaged file kept as {kept[0]}" in recovered
    assert "rowids not readable" in recovered
    message_line = next(
        line for line in recovered.splitlines() if line.strip().startswith("message ")
    )
    saved = int(message_line.split()[1].replace(",", ""))
    assert MESSAGES * 0.8 <= saved < MESSAGES

    assert main(["db", "check", "--config", str(config)]) == 0


def test_run_refuses_a_zero_byte_database(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = config.parent / "data" / "simedge.db"
    db.parent.mkdir()
    db.write_bytes(b"")
    agent = run_agent(config)
    assert agent.returncode == 2
    assert "0 bytes" in agent.stderr
    assert db.stat().st_size == 0
    assert main(["db", "recover", "--config", str(config)]) == 0
    assert "nothing could be read" in capsys.readouterr().out
    assert not db.exists()


def test_status_on_a_damaged_database_points_to_db_check(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = config.parent / "data" / "simedge.db"
    db.parent.mkdir()
    db.write_bytes(b"SQLite format 3\x00" + b"\xff" * 8176)  # a header, then garbage
    assert main(["status", "--config", str(config)]) == 1
    error = capsys.readouterr().err
    assert str(db) in error
    assert "simedge db check" in error


class AnsweringAgent:
    """Answers the control socket as a running agent does (the real server, our handler)."""

    async def handle(self, op: str, arguments: dict[str, object]) -> object:
        return {"op": op}


async def test_recover_refuses_while_an_agent_answers(config: Path) -> None:
    db = config.parent / "data" / "simedge.db"
    await asyncio.to_thread(fill, db, 5)
    before = await asyncio.to_thread(db.read_bytes)
    server = ControlServer(config.parent / "control.sock", AnsweringAgent())
    await server.start()
    try:
        code = await asyncio.to_thread(main, ["db", "recover", "--config", str(config)])
    finally:
        await server.stop()
    assert code == 1
    assert await asyncio.to_thread(db.read_bytes) == before
    assert not await asyncio.to_thread(lambda: list(db.parent.glob("*.damaged-*")))


def test_recover_refuses_while_an_agent_holds_the_data_folder(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An agent that holds the folder but does not answer on its socket yet (it is opening
    the store: the quick check, the migrations) must not have its database moved away."""
    db = config.parent / "data" / "simedge.db"
    fill(db, 5)
    damage_page(db)
    before = db.read_bytes()
    with holder(HOLD_DATA_DIR, str(db.parent)) as agent:
        assert main(["db", "recover", "--config", str(config)]) == 1
        assert f"PID {agent.pid}" in capsys.readouterr().err
        assert db.read_bytes() == before
        assert not list(db.parent.glob("*.damaged-*"))
    assert main(["db", "recover", "--config", str(config)]) == 0  # stopped: it may go on
