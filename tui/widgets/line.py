"""A fixed-size block of text that repaints itself, and only itself, when it changes.

``Static.update`` asks for a new layout of the whole screen, which repaints every line of
the terminal: over a slow SSH link, that is the difference between a few bytes and a few
kilobytes per redraw. Widgets whose size is set in the stylesheet use this instead.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget


class TextBlock(Widget):
    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.text = Text()

    def show_text(self, text: Text) -> None:
        """Repaint with ``text`` if it differs from what is shown; never re-lays out."""
        if text != self.text:
            self.text = text
            self.refresh()

    def render(self) -> Text:
        return self.text
