"""The header's "SIMs online": what OnlineSim accepted, never the SIMs that look ready."""

from __future__ import annotations

import dataclasses

from agent.status import ModemState, ModemStatus, NumbersOnline, SimState, SiteSnapshot
from tests.tui.site import NOW
from tui.view import SiteView
from tui.widgets.header import HeaderBar

READY = tuple(
    ModemStatus(slot=f"1-1.{n}", state=ModemState.READY, sim_state=SimState.READY) for n in (1, 2)
)


def third_line(snapshot: SiteSnapshot) -> str:
    view = SiteView(snapshot=snapshot, live=True, problem=None, now=NOW)
    return HeaderBar("overview").render_view(view).plain.splitlines()[2]


def test_ready_sims_without_an_accepted_list_are_not_online() -> None:
    snapshot = SiteSnapshot(taken_at=NOW, modems=READY, numbers_online=None)
    assert third_line(snapshot).startswith("SIMs online not yet sent  clock")


def test_online_is_the_accepted_count_even_when_all_look_ready() -> None:
    snapshot = SiteSnapshot(
        taken_at=NOW, modems=READY, numbers_online=NumbersOnline(count=0, accepted_at=NOW - 5)
    )
    assert third_line(snapshot).startswith("SIMs online 0/2  ")
    accepted = dataclasses.replace(snapshot, numbers_online=NumbersOnline(2, NOW - 5))
    assert third_line(accepted).startswith("SIMs online 2/2  ")
