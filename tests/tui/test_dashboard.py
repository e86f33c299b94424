"""The dashboard against a served site: each screen shows the right data, each action
reaches the agent and its effect comes back on screen; the agent-down case."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from textual.widgets import DataTable, RichLog, Sparkline, Static

from agent.control.protocol import (
    EventKind,
    Rescan,
    ResetModem,
    Retry,
    SetNumber,
    TakeoffDone,
    Trace,
)
from agent.control.server import ControlServer
from agent.status import (
    AttemptRecord,
    MessageDetail,
    MessageSummary,
    ModemState,
    PduRecord,
    UplinkCondition,
    UplinkStatus,
)
from tests.tui.pilot import cell, column, make_app, until
from tests.tui.site import HOSTILE, NOW, SiteStandIn, demo_messages, start_site
from tui.screens.messages import MessageDetailScreen, MessagesScreen, detail_text
from tui.screens.overview import SlotDetailScreen
from tui.widgets.header import HeaderBar
from tui.widgets.line import TextBlock
from tui.widgets.slots import SlotTable


def header_text(app) -> str:
    return app.screen.query_one(HeaderBar).text.plain


async def test_overview_shows_the_site(site: SiteStandIn, socket_path: Path) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.view.live)
        table = app.screen.query_one(SlotTable)
        assert column(table, "slot") == [f"A{i}" for i in range(1, 9)]
        assert column(table, "modem")[:5] == [
            "● ready",
            "● ready",
            "▲ recovering",
            "● ready",
            "✖ failed",
        ]
        assert cell(table, "1-1.4", "sim") == "✖ absent"
        assert cell(table, "1-1.1", "signal") == "▂▄▆█"
        assert cell(table, "1-1.7", "signal") == "▂···"
        assert cell(table, "1-1.2", "number") == "+79161234501"
        assert cell(table, "1-1.2", "takeoff") == "⚑ $"
        assert cell(table, "1-1.8", "today") == "21"
        assert cell(table, "1-1.8", "last") == "10m"
        header = header_text(app)
        assert header.startswith("● live")
        assert "uplink ● ok  last upload <1m ago" in header
        assert "▲1 back-off ✖2 dead" in header
        assert "SIMs online 4/8  clock ✔ synced  disk 11.6 GB free" in header
        assert "take-off 1 (75.50 ₽)" in header
        # The narrow table leaves the fault out; the line under it says it.
        await pilot.press("down", "down")
        line = app.screen.query_one("#slot-line", TextBlock).text.plain
        assert "fault: no answer to AT for 15 s" in line


async def test_wide_terminal_shows_operator_and_fault(site: SiteStandIn, socket_path: Path):
    app = make_app(socket_path)
    async with app.run_test(size=(160, 50)) as pilot:
        await until(pilot, lambda: app.view.live)
        table = app.screen.query_one(SlotTable)
        assert cell(table, "1-1.1", "operator") == "MegaFon"
        assert cell(table, "1-1.5", "fault") == "port gone after reset (CME 10)"


async def test_the_header_says_the_uplink_is_paused_while_the_store_cannot_write(
    site: SiteStandIn, socket_path: Path
) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.view.live)
        paused = UplinkStatus(state=UplinkCondition.STORE_NOT_WRITABLE, code="DiskFull", since=NOW)
        site.publish(EventKind.UPLINK, paused)
        await until(pilot, lambda: "PAUSED: store not writable" in header_text(app))
        assert "(DiskFull)" in header_text(app)


async def test_live_events_update_only_their_cells(site: SiteStandIn, socket_path: Path):
    app = make_app(socket_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.view.live)
        table = app.screen.query_one(SlotTable)
        before = {key: dict(row) for key, row in table._data.items()}
        site.update_modem(lambda m: m.slot == "1-1.1", state=ModemState.FAILED, fault="gone")
        await until(pilot, lambda: cell(table, "1-1.1", "modem") == "✖ failed")
        changed = [
            (str(r.value), str(c.value))
            for r, row in table._data.items()
            for c, value in row.items()
            if before[r][c] is not value
        ]
        assert changed == [("1-1.1", "modem")]


async def test_a_burst_of_sms_is_coalesced(site: SiteStandIn, socket_path: Path) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.view.live)
        updates = app.updates
        for n in range(200):
            site.receive(
                MessageSummary(
                    id=100 + n,
                    sender="Bank",
                    text=f"code {n}",
                    state="pending",
                    received_at=NOW,
                    slot="1-1.1",
                )
            )
        table = app.screen.query_one(SlotTable)
        await until(pilot, lambda: cell(table, "1-1.1", "today") == "200")
        # 200 events, a handful of redraws (min_interval 0.05 s in tests).
        assert app.updates - updates < 20


async def test_actions_reach_the_agent(site: SiteStandIn, socket_path: Path) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.view.live)
        await pilot.press("r")
        await until(pilot, lambda: Rescan() in site.calls)

        await pilot.press("down", "x")  # destructive: asks first; "n" says no
        await pilot.press("n")
        await pilot.press("x", "y")
        await until(pilot, lambda: ResetModem("1-1.2") in site.calls)
        assert site.calls.count(ResetModem("1-1.2")) == 1

        await pilot.press("t")
        await until(pilot, lambda: Trace("1-1.2", on=True) in site.calls)

        await pilot.press("n")
        await pilot.press("ctrl+a", "ctrl+k", *"+79990001122", "enter")
        await until(
            pilot,
            lambda: SetNumber("8970100000000000001", "+79990001122") in site.calls,
        )
        table = app.screen.query_one(SlotTable)
        await until(pilot, lambda: cell(table, "1-1.2", "number") == "+79990001122")


async def test_outbox_and_retry(site: SiteStandIn, socket_path: Path) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.view.live)
        await pilot.press("3")
        table = app.screen.query_one("#outbox", DataTable)
        await until(pilot, lambda: table.row_count == 2)
        assert cell(table, "3", "state") == "▲ retry in 5m"
        assert cell(table, "2", "state") == "✖ dead"
        assert cell(table, "2", "reason") == "400 WRONG_PARAMS: rejected"
        await pilot.press("A", "y")
        await until(pilot, lambda: Retry(all_dead=True) in site.calls)
        await until(
            pilot,
            lambda: (
                "✖0 dead" not in header_text(app) and "✖" not in header_text(app).split("outbox")[1]
            ),
        )


async def test_retry_one_message(site: SiteStandIn, socket_path: Path) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.view.live)
        await pilot.press("3")
        table = app.screen.query_one("#outbox", DataTable)
        await until(pilot, lambda: table.row_count == 2)
        await pilot.press("down", "r")
        await until(pilot, lambda: site.calls, within=2)
        assert site.calls == [Retry(message_id=2)]


async def test_takeoff_mark_done(site: SiteStandIn, socket_path: Path) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.view.live)
        await pilot.press("4")
        table = app.screen.query_one("#takeoff", DataTable)
        await until(pilot, lambda: table.row_count == 1)
        assert cell(table, "8970100000000000001", "sum") == "75.50 ₽"
        assert "1 SIM(s) to swap, 75.50 ₽ in all" in str(
            app.screen.query_one("#takeoff-total", Static).render()
        )
        await pilot.press("d", "y")
        await until(pilot, lambda: table.row_count == 0)
        assert TakeoffDone("8970100000000000001") in site.calls


async def test_messages_feed_filter_and_detail(site: SiteStandIn, socket_path: Path) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.view.live)
        await pilot.press("2")
        table = app.screen.query_one("#messages", DataTable)
        await until(pilot, lambda: table.row_count == 3)
        assert column(table, "sender") == ["Google", "+79991112233", "VKcom"]  # newest last
        site.receive(
            MessageSummary(id=9, sender="Uber", text="ride", state="pending", received_at=NOW)
        )
        await until(pilot, lambda: table.row_count == 4)
        assert cell(table, "9", "text") == "ride"

        await pilot.press("slash", *"VK", "enter")
        await until(pilot, lambda: column(table, "sender") == ["VKcom"])


async def test_message_detail(site: SiteStandIn, socket_path: Path) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.view.live)
        await pilot.press("2")
        table = app.screen.query_one("#messages", DataTable)
        await until(pilot, lambda: table.row_count == 3)
        await pilot.press("enter")
        assert isinstance(app.screen, MessageDetailScreen)
        body = app.screen.query_one("#message-detail", Static)
        await until(pilot, lambda: "PDU parts (1)" in str(body.render()), within=2)
        shown = str(body.render())
        assert "07919730071111F1040B919701" in shown
        assert "dead HTTP 400 WRONG_PARAMS" in shown
        assert "Your code: 4821" in shown
        await pilot.press("escape")
        assert isinstance(app.screen, MessagesScreen)


async def test_untrusted_text_is_shown_literally(site: SiteStandIn, socket_path: Path) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: app.view.live)
        await pilot.press("2")
        table = app.screen.query_one("#messages", DataTable)
        await until(pilot, lambda: table.row_count == 3)
        shown = cell(table, "2", "text")
        assert shown.startswith("[bold red]PWNED[/] ␛[2J␛]0;owned␇ [link=http://x]y[/link]")
        assert "\\x9b31m" in shown
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in shown)
        rendered = app.export_screenshot().replace("&#160;", " ")
        assert "[bold&#160;red]PWNED[/]".replace("&#160;", " ") in rendered
        assert "\x1b" not in rendered


def test_message_detail_text_is_literal() -> None:
    detail = MessageDetail(
        message=dataclasses.replace(demo_messages()[1], sender="[i]x\x1b[0m"),
        pdus=(PduRecord("00\x1b[31m", NOW, "SM", 1, "ok", error="[b]bad[/b]"),),
        attempts=(AttemptRecord(NOW, "dead", 400, "\x1b]8;;http://evil\x07click"),),
    )
    shown = detail_text(detail).plain
    assert "[bold red]PWNED[/] ␛[2J" in shown
    assert "[i]x␛[0m" in shown
    assert "00␛[31m" in shown
    assert "[b]bad[/b]" in shown
    assert "␛]8;;http://evil␇click" in shown
    assert HOSTILE not in shown
    assert "\x1b" not in shown


async def test_charts_and_log_and_slot_detail(site: SiteStandIn, socket_path: Path) -> None:
    app = make_app(socket_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.view.live)
        await pilot.press("enter")
        assert isinstance(app.screen, SlotDetailScreen)
        assert len(app.screen.query_one("#sms-chart", Sparkline).data) == 24
        await pilot.press("escape", "5")
        charts = app.screen.query_one("#slot-charts", DataTable)
        assert cell(charts, "1-1.2", "sms").startswith("▁▃▆█")
        assert app.screen.query_one("#forwarded-chart", Sparkline).data[1] == 5.0
        await pilot.press("6")
        log = app.screen.query_one(RichLog)
        lines = [strip.text for strip in log.lines]
        assert any("✖ alarm" in line and "addMessage answered 401" in line for line in lines)


async def test_agent_down_then_back(socket_path: Path, stand_in: SiteStandIn, tmp_path: Path):
    from tests.tui.test_offline import make_database

    db_path = await make_database(tmp_path / "simedge.db")
    app = make_app(socket_path, db_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.view.snapshot.modems)
        assert not app.view.live
        header = header_text(app)
        assert "✖ AGENT DOWN" in header
        assert "the agent is not running" in header
        table = app.screen.query_one(SlotTable)
        assert cell(table, "1-1.1", "modem") == "? unknown"
        assert cell(table, "1-1.1", "number") == "+79161234500"
        await pilot.press("r")
        await until(pilot, lambda: "cannot rescan" in str(list(app._notifications)))

        server: ControlServer = await start_site(socket_path, stand_in)
        try:
            await until(pilot, lambda: app.view.live)
            assert "● live" in header_text(app)
            assert len(app.screen.query_one(SlotTable).rows) == 8
            await server.stop()
            await until(pilot, lambda: not app.view.live)
            assert "AGENT DOWN" in header_text(app)
        finally:
            await server.stop()


def test_status_round_trips_through_json() -> None:
    import json

    from agent.status import MessageDetail, PduRecord, SiteSnapshot, from_json
    from tests.tui.site import demo_messages, demo_site

    snapshot = demo_site()
    assert from_json(SiteSnapshot, json.loads(json.dumps(snapshot.to_json()))) == snapshot
    detail = MessageDetail(demo_messages()[0], pdus=(PduRecord("00", 1.0, "SM", 1, "ok"),))
    assert from_json(MessageDetail, json.loads(json.dumps(detail.to_json()))) == detail
    broken = dataclasses.asdict(demo_messages()[0]) | {"received_at": "yesterday"}
    with pytest.raises(ValueError, match="received_at: expected a number, got 'yesterday'"):
        from_json(MessageSummary, broken)


async def test_header_shows_the_public_url_and_follows_its_changes(
    site: SiteStandIn, socket_path: Path
) -> None:
    from agent.status import PublicUrlState, PublicUrlStatus

    url = "https://relay.example/site-a/onlinesim/numbers?token=TOKEN"
    up = PublicUrlStatus(url=url, state=PublicUrlState.UP, since=NOW - 7200, checked_at=NOW)
    site.snapshot = dataclasses.replace(site.snapshot, public_url=up)
    app = make_app(socket_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.view.live)
        assert header_text(app).startswith("● live  public URL ● reachable for ")
        down = dataclasses.replace(up, state=PublicUrlState.DOWN, since=NOW, problem="502")
        site.publish(EventKind.PUBLIC_URL, down)
        await until(pilot, lambda: "public URL ✖ UNREACHABLE for " in header_text(app))


def test_public_url_text_says_state_and_age() -> None:
    from agent.status import PublicUrlState, PublicUrlStatus
    from tui.widgets.header import public_url_text

    status = PublicUrlStatus(url="u", state=PublicUrlState.UP, since=NOW - 7200)
    assert public_url_text(status, NOW).plain == "public URL ● reachable for 2h"
    status = PublicUrlStatus(url="u", state=PublicUrlState.DOWN, since=NOW - 90)
    assert public_url_text(status, NOW).plain == "public URL ✖ UNREACHABLE for 1m"
    assert public_url_text(PublicUrlStatus(url="u"), NOW).plain == "public URL ? not checked yet"
