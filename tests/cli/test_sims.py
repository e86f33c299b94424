"""`simedge sims` (from the database while the agent is down, and from the agent) and
`simedge sim balance` (needs the agent)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main
from agent.control.protocol import AskBalance, ListSims, handles
from agent.control.server import ControlServer
from agent.status import BalanceAnswer, SimRow
from agent.store import Store

ICCID, OTHER = "8970101234567890001", "8970199000000000002"


async def _fill(db: Path) -> None:
    store = await Store.open(db)
    try:
        now = datetime.now(UTC)
        await store.upsert_sim(
            ICCID, number="+79161230001", number_source="ussd", operator="25001",
            slot="usb-1.1", seen_at=now,
        )  # fmt: skip
        await store.upsert_sim(OTHER, operator="25099", slot="usb-1.2", seen_at=now)
        await store.record_balance(
            BalanceAnswer(
                ICCID, now.timestamp(), "usb-1.1", "*100#", 3.25, "RUB", "Баланс:3,25р", None
            )
        )
    finally:
        await store.close()


@pytest.fixture
def upkeep_config(config: Path) -> Path:
    config.write_text(
        config.read_text() + '[sims]\nlow_balance = 5\n[sims.keepalive."25001"]\n'
        'days = 30\nussd = "*321#"\n'
    )
    return config


async def test_sims_show_the_calls_and_a_failed_number_probe(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = config.parent / "data" / "simedge.db"
    await _fill(db)
    store = await Store.open(db)
    try:
        now = time.time()
        for at, caller in (
            (now - 60, "+74951234567"),
            (now - 30, None),
            (now - 10, "+74957654321"),
        ):
            await store.record_call(
                iccid=ICCID, slot="usb-1.1", caller=caller, at=at,
                rejected_with="ATH", forward_template=None,
            )  # fmt: skip
        probe = await store.start_probe(
            iccid=OTHER, slot="usb-1.2", target_iccid=ICCID, target_number="+79161230001",
            token="probe-token-1", at=now - 20,
        )  # fmt: skip
        assert await store.probe_failed(probe, "+CMS ERROR: 38 (network out of order)", now - 5)
    finally:
        await store.close()

    assert await asyncio.to_thread(main, ["sims", "--config", str(config), "--json"]) == 0
    rows = {row["iccid"]: row for row in json.loads(capsys.readouterr().out)}
    assert (rows[ICCID]["calls"], rows[ICCID]["last_caller"]) == (3, "+74957654321")
    assert rows[ICCID]["probe_state"] is None
    assert (rows[OTHER]["calls"], rows[OTHER]["last_caller"]) == (0, None)
    assert (rows[OTHER]["probe_state"], rows[OTHER]["probe_error"]) == (
        "failed",
        "+CMS ERROR: 38 (network out of order)",
    )
    assert await asyncio.to_thread(main, ["sims", "--config", str(config)]) == 0
    text = capsys.readouterr().out
    assert "CALLS" in text.splitlines()[0]
    assert "+74957654321" in text
    assert "failed: +CMS ERROR: 38 (network out of order)" in text


async def test_sims_from_the_database_as_text_and_json(
    upkeep_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = upkeep_config
    await _fill(config.parent / "data" / "simedge.db")

    # In a thread: the command runs its own event loop, as it does from a shell.
    assert await asyncio.to_thread(main, ["sims", "--config", str(config), "--json"]) == 0
    rows = {row["iccid"]: row for row in json.loads(capsys.readouterr().out)}
    assert await asyncio.to_thread(main, ["sims", "--config", str(config)]) == 0
    text = capsys.readouterr().out

    assert set(rows) == {ICCID, OTHER}
    sim = rows[ICCID]
    assert (sim["balance"], sim["balance_currency"], sim["balance_low"]) == (3.25, "RUB", True)
    assert sim["in_slot"] is False  # nobody running can say it is there now
    assert sim["active_until"] == pytest.approx(sim["first_seen"] + 30 * 86400)
    assert rows[OTHER]["active_until"] is None
    header, _first, _second, legend = text.splitlines()
    assert header.split()[:4] == ["SLOT", "NUMBER", "BALANCE", "UNTIL"]
    assert "(usb-1.1)  +79161230001      3.25 RUB LOW" in text
    assert ICCID in text
    assert legend.startswith("2 SIM(s).")


def test_sims_without_a_database_says_so(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sims", "--config", str(config)]) == 1
    assert "no database at" in capsys.readouterr().err


class _Agent:
    """The control handlers of a running agent, reduced to the two ops these commands use."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    @handles(ListSims)
    async def sims(self, request: ListSims) -> tuple[SimRow, ...]:
        self.calls.append(request)
        return (SimRow(ICCID, "usb-1.1", True, "+79161230001", "cnum", "25001", 0.0, 1.0),)

    @handles(AskBalance)
    async def ask_balance(self, request: AskBalance) -> str:
        self.calls.append(request)
        return f"balance of SIM {request.sim} asked"


async def test_sims_and_balance_ask_the_running_agent(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agent = _Agent()
    server = ControlServer(tmp_path / "control.sock", agent)
    await server.start()
    try:
        code = await asyncio.to_thread(main, ["sims", "--config", str(config), "--json"])
        rows = json.loads(capsys.readouterr().out)
        asked = await asyncio.to_thread(
            main, ["sim", "balance", "usb-1.1", "--config", str(config)]
        )
    finally:
        await server.stop()
    assert (code, asked) == (0, 0)
    assert [(row["slot"], row["in_slot"]) for row in rows] == [("usb-1.1", True)]
    assert "balance of SIM usb-1.1 asked" in capsys.readouterr().out
    assert agent.calls == [ListSims(), AskBalance("usb-1.1")]


def test_balance_needs_the_agent(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    assert main(["sim", "balance", "usb-1.1", "--config", str(config)]) == 1
    assert "the agent is not running" in capsys.readouterr().err
    assert time.monotonic() - started < 10
