"""What every main screen shares: the header bar, the footer, and drawing from the view."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer

from tui.view import SiteView
from tui.widgets.header import HeaderBar

if TYPE_CHECKING:
    from tui.app import SimedgeApp


class SiteScreen(Screen[None]):
    """A main screen. Subclasses compose their body and draw it in ``show_body``.

    Only the screen in front is drawn: the app calls ``show`` on it when the site changes,
    and a screen brought to the front draws itself from the latest view."""

    NAME = ""

    def compose(self) -> ComposeResult:
        yield HeaderBar(self.NAME)
        yield from self.compose_body()
        yield Footer()

    def compose_body(self) -> ComposeResult:
        raise NotImplementedError

    @property
    def site_app(self) -> SimedgeApp:
        return cast("SimedgeApp", self.app)

    @property
    def header_bar(self) -> HeaderBar:
        return self.query_one(HeaderBar)

    def on_screen_resume(self) -> None:
        self.show(self.site_app.view)

    def show(self, view: SiteView) -> None:
        if not self.query(HeaderBar):
            # Being built or taken down (the app quits while the link still reports): no
            # widgets to draw in. A screen draws itself when it comes to the front.
            return
        self.header_bar.show(view)
        self.show_body(view)

    def show_body(self, view: SiteView) -> None:
        raise NotImplementedError
