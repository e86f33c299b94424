"""`simedge status` on a real store: outbox counts and take-off marks, read-only."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.cli import main
from agent.cli.status import agent_health, render
from agent.control.client import ControlClient
from agent.control.protocol import TakeSnapshot
from agent.control.server import ControlServer
from agent.protocol.pdu import encode_deliver
from agent.store import Store
from agent.store.models import Sim
from tests.control.test_control import SMALL, RecordingHandler

ICCID, NEW_ICCID = "8970101234567890001", "8970101234567890009"


async def _fill(db: Path) -> None:
    store = await Store.open(db)
    try:
        now = datetime.now(UTC)
        await store.upsert_sim(ICCID, number="+79161230001", slot="usb-1.1", seen_at=now)
        await store.upsert_sim("8970101234567890002", number="+79161230002", slot="usb-1.2")
        ids = []
        for n in range(3):
            (pdu,) = encode_deliver(f"code {n}", "VKcom", timestamp=now)
            result = await store.ingest_pdu(
                iccid=ICCID, imei=None, slot="usb-1.1", storage="SM", index=n,
                pdu_hex=pdu.hex(), read_at=now,
            )  # fmt: skip
            ids.append(result.message_id)
        await store.mark_sent(ids[0], now, 200, None)
        await store.dead_letter(ids[1], "ERROR_PARAMS: empty", 400, '{"response":"ERROR_PARAMS"}')
        await store.schedule_retry(ids[2], 1, now + timedelta(hours=1), "HTTP_503: busy")
        await store.writer.submit(
            lambda: Sim.update(takeoff_sum=75.5, takeoff_at=now).execute(), "mark"
        )
    finally:
        await store.close()


async def test_status_shows_the_outbox_and_the_sims_to_swap(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await _fill(config.parent / "data" / "simedge.db")

    assert main(["status", "--config", str(config), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert main(["status", "--config", str(config)]) == 0
    text = capsys.readouterr().out

    outbox = report["outbox"]
    assert (outbox["pending"], outbox["backing_off"], outbox["dead"]) == (0, 1, 1)
    assert outbox["last_success_at"] is not None
    assert outbox["last_error"] == "HTTP_503: busy"
    assert [(m["slot"], m["sum"]) for m in report["takeoff"]] == [
        ("usb-1.1", 75.5),
        ("usb-1.2", 75.5),
    ]
    assert "swap SIM in slot usb-1.1 (75.5 RUB)" in text
    assert "in back-off  1" in text
    # No agent answers on the control socket: its in-memory state is unknown, and said so.
    assert report["agent"] is None
    assert "agent          not running (uplink as last recorded)" in text


async def test_a_new_sim_in_the_slot_hides_the_old_mark(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = config.parent / "data" / "simedge.db"
    await _fill(db)
    store = await Store.open(db)
    later = datetime.now(UTC) + timedelta(minutes=1)
    await store.upsert_sim(NEW_ICCID, number="+79161230009", slot="usb-1.1", seen_at=later)
    await store.close()

    assert main(["status", "--config", str(config), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [m["slot"] for m in report["takeoff"]] == ["usb-1.2"]


def test_status_without_a_database_says_so(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--config", str(config)]) == 1
    assert "no database" in capsys.readouterr().err


def test_status_shows_the_running_agents_uplink_and_store() -> None:
    report = {
        "outbox": {
            "pending": 3, "backing_off": 0, "dead": 0, "blocked": 0, "assembling": 0,
            "last_success_at": None, "last_error": None, "last_error_at": None,
        },
        "takeoff": [],
        "uplink": {"state": "ok", "code": None, "since": "2026-12-01T00:00:00Z"},
        "numbers_online": None,
        "agent": {
            "agent": "failing",
            "uplink": {"state": "store_not_writable", "code": "DiskFull", "since": 1.0},
            "store": {"writable": False},
        },
    }  # fmt: skip
    lines = render(report).splitlines()
    assert lines[:3] == [
        "agent          failing",
        "uplink         PAUSED: store not writable (DiskFull)",
        "store          NOT WRITABLE",
    ]


async def test_a_relative_config_path_works_from_its_folder(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 15 item 6: `simedge status --config simedge.toml` ended in a ValueError.
    await _fill(config.parent / "data" / "simedge.db")
    monkeypatch.chdir(config.parent)
    assert main(["status", "--config", "simedge.toml", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert main(["status", "--config", str(config), "--json"]) == 0
    assert report == json.loads(capsys.readouterr().out)
    assert report["outbox"]["dead"] == 1


@pytest.fixture
def config_with_public_url(config: Path) -> Path:
    config.write_text(
        config.read_text().replace("[webhook]\n", "[webhook]\npublic_url = 'https://r.example/a'\n")
    )
    return config


async def test_status_shows_the_public_url_and_its_last_state(
    config_with_public_url: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_with_public_url
    db = config.parent / "data" / "simedge.db"
    await _fill(db)
    assert main(["status", "--config", str(config), "--json"]) == 0
    url = "https://r.example/a/onlinesim/numbers?token=TOKEN"
    assert json.loads(capsys.readouterr().out)["public_url"] == {
        "url": url, "state": "unknown", "since": None, "detail": None
    }  # fmt: skip

    store = await Store.open(db)
    await store.log_event("public_url", f"public URL reachable: {url}", level="info")
    await store.log_event("public_url", "public URL unreachable: HTTP 502", level="alarm")
    await store.close()
    assert main(["status", "--config", str(config), "--json"]) == 0
    public_url = json.loads(capsys.readouterr().out)["public_url"]
    assert (public_url["state"], public_url["detail"]) == (
        "down",
        "public URL unreachable: HTTP 502",
    )
    assert main(["status", "--config", str(config)]) == 0
    text = capsys.readouterr().out
    assert f"  {url}\n  down since " in text


async def test_an_agent_that_listens_but_does_not_answer_is_not_called_not_running(
    tmp_path: Path,
) -> None:
    # Every control place taken (a dashboard per person, a script in a loop): the agent
    # runs; "not running" would send the person to start a second one.
    socket = tmp_path / "control.sock"
    assert await asyncio.to_thread(agent_health, socket) is None  # nobody there: not running
    server = ControlServer(socket, RecordingHandler(), max_clients=1)
    await server.start()
    holder = ControlClient(socket)
    try:
        assert await holder.call(TakeSnapshot()) == SMALL
        health = await asyncio.to_thread(agent_health, socket)
    finally:
        await holder.close()
        await server.stop()
    assert health is not None
    assert health["agent"].startswith("running, not answering (too many control clients (1)")
    recorded = {"state": "paused", "code": "ERROR_WRONG_KEY", "since": "2026-12-01T00:00:00Z"}
    report = {
        "outbox": {
            "pending": 0, "backing_off": 0, "dead": 0, "blocked": 0, "assembling": 0,
            "last_success_at": None, "last_error": None, "last_error_at": None,
        },
        "takeoff": [], "uplink": recorded, "numbers_online": None, "agent": health,
    }  # fmt: skip
    lines = render(report).splitlines()
    assert lines[0].startswith("agent          running, not answering")
    assert lines[1] == (
        "uplink         PAUSED (account refused) (ERROR_WRONG_KEY) since 2026-12-01T00:00:00Z"
    )
    assert not any(line.startswith("store ") for line in lines)  # not known: not said
