"""Hot-plug: notice modems that come and go, by looking at the port folders often.

The watcher looks every half second instead of adding an inotify or udev dependency
(udev says nothing of the emulated modems' ptys, and a look costs next to nothing); a
change is in hand within a second, which leaves the rest of the 5-second budget for
probing and start-up. A look is two steps of very different cost:

- whether anything changed: a stat of each watched folder (``/dev``,
  ``/dev/serial/by-path``, each glob's folder), whose mtime moves when a node or link in
  it comes, goes or is made again. That is three system calls on in-memory file systems
  (devtmpfs, the tmpfs of emulated ports): microseconds, done on the event loop itself,
  because handing them to a thread and back cost more than they do (issue 19: the idle
  agent's two thread hand-offs a second, a futex dance among the pool's threads and a
  wake-up of the loop through its self-pipe each time);
- only when something changed, the listing: pyserial's walk of sysfs, a glob of each
  pattern, a stat per port (milliseconds for a few hundred ports), in a worker thread.

What is compared per group (physical modem) is its *fingerprint*: each port's by-path
link, the device node it resolves to, and that node's ctime. The ctime catches an unplug
and replug between two looks that got the same ``ttyUSBn``/``pts/n`` number back.

- A group that vanishes, or whose fingerprint changes, is reported ``removed`` at once:
  its worker must close the port and mark the SIM offline.
- A new (or changed) group is reported ``added`` only once two looks in a row agree,
  because udev creates a device's interfaces one after the other; a half-enumerated EC25
  must not be started with its DIAG port only. Groups present at the first look are
  reported at once: at start-up the USB tree has long settled.

Slots come from the by-path name, so a modem that returns to its socket is ``added``
again with the slot it had.
"""

from __future__ import annotations

import asyncio
import glob
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from agent.clock import BEAT, next_beat
from agent.logs import get_logger
from agent.modem.discovery import BY_PATH_DIR, PortGroup, enumerate_ports, group_ports

log = get_logger("modem.hotplug")

POLL_INTERVAL = BEAT  # the health checks fall on the same beats: one wake-up for both

Fingerprint = frozenset[tuple[str, str | None, int]]


class Change(StrEnum):
    ADDED = "added"
    REMOVED = "removed"


@dataclass(frozen=True)
class HotplugEvent:
    """A physical modem (its ports, not yet probed) appeared or went away."""

    change: Change
    group: PortGroup


def fingerprint(group: PortGroup) -> Fingerprint:
    """Each port's (device node, by-path link, node ctime); see the module docstring."""
    marks = []
    for port in group.ports:
        try:
            ctime = os.stat(port.device).st_ctime_ns
        except OSError:
            ctime = -1  # vanished between the listing and now: the next look settles it
        marks.append((port.device, port.by_path, ctime))
    return frozenset(marks)


class PortWatcher:
    """Turns repeated looks at the serial ports into added/removed events.

    ``poll()`` is one synchronous look (tests call it directly); ``look()`` is one look
    from the event loop, the listing in a worker thread; ``events()`` looks every
    ``interval`` seconds for as long as it is iterated. One look at a time.
    """

    def __init__(
        self,
        globs: Sequence[str] = (),
        *,
        labels: Mapping[str, str] | None = None,
        auto: bool = True,
        by_path_dir: Path = BY_PATH_DIR,
        interval: float = POLL_INTERVAL,
    ) -> None:
        self.globs = tuple(globs)
        self.labels = dict(labels or {})
        self.auto = auto
        self.by_path_dir = by_path_dir
        self.interval = interval
        self._present: dict[str, tuple[PortGroup, Fingerprint]] = {}
        self._settling: dict[str, Fingerprint] = {}
        self._first = True
        self._folders = self._watched_folders()
        self._folders_seen: tuple[int, ...] | None = None

    def _watched_folders(self) -> tuple[Path, ...] | None:
        """The folders whose entries change when a port comes or goes; None when a glob's
        folder is itself a pattern (then every look lists the ports)."""
        folders = [self.by_path_dir, Path("/dev")] if self.auto else []
        for pattern in self.globs:
            folder = os.path.dirname(pattern)
            if glob.has_magic(folder):
                return None
            folders.append(Path(folder or "."))
        return tuple(dict.fromkeys(folders))

    def _unchanged(self) -> bool:
        """Whether no watched folder changed since the last listing: a udev link or a tty
        node that comes, goes or is made again changes its folder's mtime. This keeps an
        idle site from listing every port twice a second."""
        if self._folders is None or self._first or self._settling:
            return False
        return self._folder_marks() == self._folders_seen

    def _folder_marks(self) -> tuple[int, ...]:
        marks = []
        for folder in self._folders or ():
            try:
                marks.append(os.stat(folder).st_mtime_ns)
            except OSError:
                marks.append(-1)
        return tuple(marks)

    @property
    def present(self) -> list[PortGroup]:
        """The groups reported added and not removed since."""
        return [group for group, _ in self._present.values()]

    def poll(self) -> list[HotplugEvent]:
        """Look once; the changes since the previous look, removals first."""
        if self._unchanged():
            return []
        return self._list()

    async def look(self) -> list[HotplugEvent]:
        """:meth:`poll` from the event loop: the folders are looked at here, the ports
        listed in a worker thread only when one of them changed (see the module
        docstring)."""
        if self._unchanged():
            return []
        return await asyncio.to_thread(self._list)

    def _list(self) -> list[HotplugEvent]:
        """List the ports and compare them with the last listing."""
        # Read before the listing, kept after it: a change during the listing is listed
        # again next time, and a listing that failed leaves the change to be seen again.
        folders_now = self._folder_marks()
        ports = enumerate_ports(self.globs, auto=self.auto, by_path_dir=self.by_path_dir)
        seen = {group.key: (group, fingerprint(group)) for group in group_ports(ports, self.labels)}
        events: list[HotplugEvent] = []
        for key, (group, marks) in list(self._present.items()):
            if key not in seen or seen[key][1] != marks:
                del self._present[key]
                events.append(HotplugEvent(Change.REMOVED, group))
        settling: dict[str, Fingerprint] = {}
        for key, (group, marks) in seen.items():
            if key in self._present:
                continue
            if self._first or self._settling.get(key) == marks:
                self._present[key] = (group, marks)
                events.append(HotplugEvent(Change.ADDED, group))
            else:
                settling[key] = marks
        self._settling = settling
        self._first = False
        self._folders_seen = folders_now
        for event in events:
            log.info("%s modem in slot %s: %s", event.change, event.group.slot, _ports(event.group))
        return events

    async def events(self) -> AsyncIterator[HotplugEvent]:
        """Every change, as it is seen, until the iteration is abandoned or cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            for event in await self.look():
                yield event
            await asyncio.sleep(next_beat(loop.time(), self.interval) - loop.time())


def _ports(group: PortGroup) -> str:
    return ", ".join(port.device for port in group.ports)
