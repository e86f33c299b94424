"""`simedge sim set-number` and `simedge outbox retry`: through the running agent, or
straight into the database when it is down."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent import config as config_module
from agent.cli import main
from agent.cli.manage import with_store
from agent.errors import AlreadyRunning
from agent.locking import DataDirLock
from agent.store import Store
from agent.store.models import Sim
from tests.e2e.site import KEY, TOKEN, StartSite
from tests.locks_helpers import HOLD_DATA_DIR, holder
from tests.store.conftest import ICCID, T0, ingest, pdus


def write_config(folder: Path, base_url: str = "http://127.0.0.1:9/api/resellers") -> Path:
    path = folder / "simedge.toml"
    path.write_text(
        f'[onlinesim]\nbase_url = "{base_url}"\napi_key = "{KEY}"\ntakeoff_sum = 0\n'
        f'[site]\ndata_dir = "data"\n[modems]\nports = ["{folder / "modems"}/*"]\n'
        f'[webhook]\nlisten = "127.0.0.1:1"\ntoken = "{TOKEN}"\n'
        '[control]\nsocket = "control.sock"\n'
    )
    return path


async def test_set_number_through_the_running_agent(
    start_site: StartSite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = await start_site(count=1, profile="sim800")
    await site.ready_modems(1)
    config = write_config(tmp_path, site.config.onlinesim.base_url)
    assert config_module.load(config).control_socket == site.config.control_socket
    iccid = site.hub.slots[0].modem.sim.iccid
    code = await asyncio.to_thread(
        main, ["sim", "set-number", iccid, "+7 999 000-11-22", "--config", str(config)]
    )
    assert code == 0
    assert f"number of {iccid} set to +79990001122" in capsys.readouterr().out
    await site.until(lambda: "+79990001122" in site.standin.state.online)


async def test_set_number_with_the_agent_down_goes_to_the_database(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    store = await Store.open(config_module.load(config).database)
    await ingest(store, pdus("hello")[0])  # the SIM is known to the store
    await store.close()
    code = await asyncio.to_thread(
        main, ["sim", "set-number", ICCID, "+79161230099", "--config", str(config)]
    )
    assert code == 0
    store = await Store.open(config_module.load(config).database)
    try:
        row = await store.read(lambda: Sim.get(Sim.iccid == ICCID))
        assert (row.number, row.number_source) == ("+79161230099", "manual")
    finally:
        await store.close()


def test_an_impossible_number_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    assert main(["sim", "set-number", ICCID, "+7123", "--config", str(config)]) == 2
    assert "'+7123' is not a possible phone number" in capsys.readouterr().err


async def test_outbox_retry_with_the_agent_down(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    store = await Store.open(config_module.load(config).database)
    result = await ingest(store, pdus("dead one")[0])
    assert result.message_id is not None
    await store.dead_letter(result.message_id, "NUMBER_FORMAT_ERROR", 400, "NUMBER_FORMAT_ERROR")
    await store.close()
    code = await asyncio.to_thread(main, ["outbox", "retry", "--all-dead", "--config", str(config)])
    assert code == 0
    assert "1 dead letters queued again" in capsys.readouterr().out
    store = await Store.open(config_module.load(config).database)
    try:
        counts = await store.outbox_counts(T0)
        assert (counts.dead, counts.pending + counts.backing_off) == (0, 1)
    finally:
        await store.close()


def test_with_the_agent_holding_the_folder_but_not_answering_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    data = config_module.load(config).site.data_dir
    data.mkdir()
    with holder(HOLD_DATA_DIR, str(data)) as agent:  # an agent still starting, say
        code = main(["outbox", "retry", "--all-dead", "--config", str(config)])
    assert code == 1
    assert capsys.readouterr().err.startswith(
        f"simedge outbox retry: {data}: another simedge agent (PID {agent.pid}) is already running"
    )
    assert sorted(path.name for path in data.iterdir()) == ["simedge.lock"]  # no database


def test_a_check_beside_no_agent_creates_no_lock_file(tmp_path: Path) -> None:
    # `sudo simedge ...` must not leave a root-owned lock file the agent could not open.
    config = write_config(tmp_path)
    data = config_module.load(config).site.data_dir
    data.mkdir()
    assert main(["outbox", "retry", "--all-dead", "--config", str(config)]) == 0
    assert "simedge.lock" not in {path.name for path in data.iterdir()}


async def test_an_agent_cannot_start_while_a_command_writes_the_database(tmp_path: Path) -> None:
    """The offline write holds the folder's lock from its check to the store's close, so
    an agent starting meanwhile is refused instead of writing the same file beside it."""
    config = config_module.load(write_config(tmp_path))
    data = config.site.data_dir
    data.mkdir()
    DataDirLock.acquire(data).release()  # an agent ran here before: its lock file stays
    refused: list[AlreadyRunning] = []

    async def work(_store: Store) -> str:
        try:
            DataDirLock.acquire(data).release()  # what `simedge run` does first
        except AlreadyRunning as exc:
            refused.append(exc)
        return "written"

    assert await with_store(config, work) == "written"
    assert refused, "an agent could take the folder while the command wrote in it"
    DataDirLock.acquire(data).release()  # and it can once the command is done
