"""systemd's notify protocol: READY, STATUS and WATCHDOG, when NOTIFY_SOCKET is set.

The protocol is one datagram of ``KEY=value`` lines to the socket systemd names in
``NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace). It is small enough
that a dependency would add more than it saves; without the variable (not under systemd,
or ``Type=simple``) every call does nothing.

The watchdog ping comes from a task on the agent's event loop, so a loop that is blocked
or dead stops pinging and systemd restarts the agent (``WatchdogSec=`` in the unit);
``alive`` lets the agent withhold the ping when a part it depends on has stopped.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Mapping

from agent.logs import get_logger

log = get_logger("systemd")


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        applies = not pid or pid == str(os.getpid())
        self.watchdog_interval = int(usec) / 1e6 / 2 if usec.isdigit() and applies else None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, **fields: str) -> None:
        """Send ``READY="1"``, ``STATUS="..."``, ``WATCHDOG="1"``...; never raises."""
        if not self.address:
            return
        payload = "\n".join(f"{key.upper()}={value}" for key, value in fields.items())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self.address)
                sock.sendall(payload.encode())
        except OSError as exc:
            log.warning("cannot notify systemd at %r: %s", self.address, exc)

    async def watchdog(self, alive: Callable[[], bool] = lambda: True) -> None:
        """Ping at half the watchdog interval while ``alive()``; runs until cancelled."""
        if self.watchdog_interval is None:
            return
        while True:
            if alive():
                self.notify(watchdog="1")
            else:
                log.error("withholding the watchdog ping: a part of the agent has stopped")
            await asyncio.sleep(self.watchdog_interval)
