"""The notify protocol, against a real datagram socket standing in for systemd."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

from agent.systemd import Notifier


def listen(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    return sock


def test_ready_and_status_reach_the_socket(tmp_path: Path) -> None:
    with listen(tmp_path / "notify") as sock:
        notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify")})
        notifier.notify(ready="1", status="4 modems ready")
        assert sock.recv(4096) == b"READY=1\nSTATUS=4 modems ready"


def test_abstract_namespace_address() -> None:
    name = f"simedge-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        Notifier({"NOTIFY_SOCKET": "@" + name}).notify(ready="1")
        assert sock.recv(4096) == b"READY=1"


def test_without_systemd_nothing_happens() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    notifier.notify(ready="1")  # no socket, no error


def test_watchdog_interval_is_half_and_only_for_our_pid() -> None:
    assert Notifier({"WATCHDOG_USEC": "30000000"}).watchdog_interval == 15
    assert Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}).watchdog_interval is None


async def test_watchdog_pings_while_alive_and_withholds_when_not(tmp_path: Path) -> None:
    with listen(tmp_path / "notify") as sock:
        sock.setblocking(False)
        notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "20000"})
        asked = 0
        withheld_twice = asyncio.Event()

        def alive() -> bool:
            nonlocal asked
            asked += 1
            if asked >= 4:
                withheld_twice.set()
            return asked <= 2

        pinger = asyncio.create_task(notifier.watchdog(alive))
        async with asyncio.timeout(5):
            await withheld_twice.wait()
        pinger.cancel()
        received = []
        while True:
            try:
                received.append(sock.recv(64))
            except BlockingIOError:
                break
        assert received == [b"WATCHDOG=1", b"WATCHDOG=1"]
