"""uvicorn embedded in the agent's own event loop: shared by the webhook and the OnlineSim
stand-in, so that both start, stop and cut connections the same way.

- :func:`listen_socket` binds before uvicorn starts, so that port 0 can pick a free port
  and the caller learns it (and a busy port fails here, as an ``OSError``, not inside
  uvicorn, which would ``sys.exit``).
- :class:`QuietServer` leaves signals to the owner and stops in milliseconds.
- :func:`start_serving` returns once the server accepts connections.
- :func:`reset_transport` cuts one connection with an RST.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Iterator
from typing import Any

import uvicorn

# SO_LINGER on, 0 seconds: close() sends RST instead of FIN, which is what "connection
# reset by peer" is.
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)


# uvicorn settings of every server embedded in one of our event loops: our logging only
# (an access line could carry a webhook token), no lifespan or websockets, the caller's loop,
# and a short graceful stop.
EMBEDDED: dict[str, Any] = {
    "log_config": None,
    "access_log": False,
    "lifespan": "off",
    "ws": "none",
    "interface": "asgi3",
    "loop": "none",
    "timeout_graceful_shutdown": 2,
}


class QuietServer(uvicorn.Server):
    """uvicorn embedded in someone else's loop, built to stop at once.

    - Signals are left to the owner (uvicorn would take over SIGINT/SIGTERM and re-raise
      them after its shutdown).
    - The main loop waits on an event instead of polling ``should_exit`` every 0.1 s.
    - Shutdown cuts instead of draining: every answer of ours is short and can be asked
      again, and tests start and stop one server per test, so a stop must cost
      milliseconds.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()
        self._exit_requested = asyncio.Event()

    def request_exit(self) -> None:
        self.should_exit = True
        self._exit_requested.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.listening.set()

    async def main_loop(self) -> None:
        # on_tick(0) refreshes the Date header and answers whether to exit.
        while not await self.on_tick(0):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._exit_requested.wait()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            reset_transport(connection.transport)
        # Handlers notice the cut (their owner's cut event, or a disconnect) and return.
        if self.server_state.tasks:
            await asyncio.wait(
                set(self.server_state.tasks), timeout=self.config.timeout_graceful_shutdown
            )
        for server in self.servers:
            await server.wait_closed()


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: a free one), not yet listening.

    Raises ``OSError`` (``socket.gaierror`` for a host that does not resolve); callers
    translate it into their own error, naming the address.
    """
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


async def start_serving(server: QuietServer, sock: socket.socket, name: str) -> asyncio.Task[None]:
    """Run ``server`` on ``sock`` in a task and return it once connections are accepted.

    If uvicorn ends before listening, the socket is closed and ``OSError`` says why.
    """
    task = asyncio.create_task(server.serve(sockets=[sock]), name=name)
    listening = asyncio.create_task(server.listening.wait())
    await asyncio.wait({task, listening}, return_when=asyncio.FIRST_COMPLETED)
    if not server.listening.is_set():
        listening.cancel()
        sock.close()
        raise OSError(f"uvicorn did not start: {task.exception()!r}")
    return task


def reset_transport(transport: asyncio.BaseTransport) -> None:
    """Cut a connection with an RST, dropping whatever is still buffered either way."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
    transport.abort()
