"""Async serial I/O for one AT port: bytes in and out, nothing else.

The transport neither frames nor interprets: it hands every chunk the port delivers to
``on_data`` and reports the end of the port once through ``on_lost`` (with the reason,
or None after a deliberate close). It is pyserial-asyncio-fast underneath; its errors
(``serial.SerialException``, ``OSError``) become :class:`agent.errors.PortGone` here and
nowhere else.

A port is opened only when no other program holds it (:mod:`agent.locking`): its UUCP
lock file is taken first, then the device is opened with pyserial's ``exclusive=True``
(``flock``, taken before any setting is touched, so the holder's line is not disturbed).
Either refusal is :class:`agent.errors.PortBusy`, naming the holder.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable

import serial
import serial_asyncio_fast

from agent.errors import PortBusy, PortGone
from agent.locking import UucpLock, describe, flock_holders
from agent.logs import get_logger

log = get_logger("modem.transport")


def port_gone(device: str, what: str, exc: BaseException | None) -> PortGone:
    """The one translation of a serial-layer error into PortGone (``raise ... from exc``
    is the caller's part, so the original stays chained)."""
    detail = f": {exc}" if exc is not None and str(exc) else ""
    return PortGone(f"{what}{detail}", device)


def _port_busy(device: str, exc: OSError) -> PortBusy:
    """The exclusive open was refused: say who holds the device, as the kernel knows it."""
    holders = [describe(pid) for pid in flock_holders(device)]
    holder = ", ".join(holders) or "another program"
    return PortBusy(
        f"held by {holder} (exclusive lock: {os.strerror(exc.errno or 0)})", device, holder=holder
    )


# flock's "someone else has it"; EBUSY: the holder set TIOCEXCL (exclusive mode).
_BUSY_ERRNOS = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EBUSY})


class _Link(asyncio.Protocol):
    """Forwards the serial transport's callbacks to the owner's two functions."""

    def __init__(
        self, on_data: Callable[[bytes], None], on_lost: Callable[[Exception | None], None]
    ) -> None:
        self._on_data = on_data
        self._on_lost = on_lost

    def data_received(self, data: bytes) -> None:
        self._on_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_lost(exc)


class SerialPort:
    """One open serial device. ``lost`` is set once the device is closed or gone."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.lost = asyncio.Event()
        self._transport: asyncio.Transport | None = None
        self._lock = UucpLock(device)

    @classmethod
    async def open(
        cls,
        device: str,
        *,
        baudrate: int,
        on_data: Callable[[bytes], None],
        on_lost: Callable[[PortGone | None], None],
    ) -> SerialPort:
        """Open ``device`` raw (8N1, no flow control) and locked for this process; raise
        PortBusy when another program holds it, PortGone when it cannot be opened."""
        port = cls(device)

        def lost(exc: Exception | None) -> None:
            port._lock.release()
            port.lost.set()
            on_lost(None if exc is None else port_gone(device, "port lost", exc))

        port._lock.acquire()
        try:
            transport, _ = await serial_asyncio_fast.create_serial_connection(
                asyncio.get_running_loop(),
                lambda: _Link(on_data, lost),
                device,
                baudrate=baudrate,
                rtscts=False,
                xonxoff=False,
                exclusive=True,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            port._lock.release()
            if isinstance(exc, OSError) and exc.errno in _BUSY_ERRNOS:
                raise _port_busy(device, exc) from exc
            raise port_gone(device, "cannot open", exc) from exc
        except BaseException:
            port._lock.release()
            raise
        port._transport = transport
        return port

    def write(self, data: bytes) -> None:
        """Queue ``data`` for the device; PortGone when it is closed or gone."""
        if self._transport is None or self._transport.is_closing() or self.lost.is_set():
            raise PortGone("port is closed", self.device)
        self._transport.write(data)

    async def close(self, *, grace: float = 2.0) -> None:
        """Close the device and wait (bounded) until the serial layer has let it go."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()
        if self._transport is None:
            self._lock.release()
            self.lost.set()
            return
        try:
            async with asyncio.timeout(grace):
                await self.lost.wait()
        except TimeoutError:
            log.warning("%s: serial layer did not confirm the close in %.1fs", self.device, grace)
        finally:
            self._lock.release()
