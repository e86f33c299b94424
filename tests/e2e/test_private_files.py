"""The data folder is private whatever starts the agent (issue 14, item 7): `simedge run`
started from a shell with umask 022 still makes its folder 0750 and its database files
0640 or stricter, so no other local user can read an SMS."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from agent.store import datadir
from tests.e2e.test_one_agent import emulated_site, start_agent, stop_agent


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_the_agent_started_with_umask_022_keeps_every_file_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with emulated_site(tmp_path, count=1, seed=9) as (hub, standin, config):
        agent = await start_agent(config, umask=0o022)
        try:
            hub.inject(0, "+79161234567", "private")
            async with asyncio.timeout(20):
                await standin.wait_until(
                    lambda state: any(m.text == "private" for m in state.messages)
                )
            files = {path.name: mode(path) for path in data.iterdir()}
        finally:
            await stop_agent(agent)
    assert mode(data) == 0o750
    # The WAL and its index exist while the agent runs; the same goes for them.
    assert {"simedge.db", "simedge.db-wal", "simedge.db-shm", "simedge.lock"} <= set(files)
    assert {name: bits & 0o037 for name, bits in files.items()} == dict.fromkeys(files, 0)


def test_a_folder_and_database_left_open_by_an_older_start_are_tightened(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o777)
    data.chmod(0o755)
    (data / "simedge.db").write_bytes(b"")
    (data / "simedge.db").chmod(0o644)
    (data / "simedge.db-wal").write_bytes(b"")
    (data / "simedge.db-wal").chmod(0o666)
    lock = datadir.claim(data, data / "simedge.db")
    lock.release()
    assert mode(data) == 0o750
    assert mode(data / "simedge.db") == 0o640
    assert mode(data / "simedge.db-wal") == 0o640
    assert mode(data / "simedge.lock") == 0o640
    assert f"{data}: mode 0755 tightened to 0750" in caplog.text


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_a_file_of_another_user_is_left_alone_and_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o750)
    database = data / "simedge.db"
    database.write_bytes(b"")
    database.chmod(0o644)
    os.chown(database, 54321, 54321)
    datadir.claim(data, database).release()
    assert mode(database) == 0o644
    assert f"{database}: mode 0644 lets others read it, and it is not ours (uid 54321)" in (
        caplog.text
    )
