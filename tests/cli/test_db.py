"""`simedge db check|recover` and `simedge run` on real damaged database files."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import main
from tests.store.test_store_integrity import MESSAGES, damage_page, fill


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
    assert main(["run", "--config", str(config)]) == 2
    refused = capsys.readouterr().err
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
    assert main(["run", "--config", str(config)]) == 2
    assert "0 bytes" in capsys.readouterr().err
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
