"""One agent per data folder, one program per serial port: the locks, and who holds them.
The conventions this follows (flock, UUCP lock files, ``/proc/locks``) are described in
``docs/locks.md``.

**The data folder** (:class:`DataDirLock`): ``flock(LOCK_EX | LOCK_NB)`` on
``DATA_DIR/simedge.lock``, held for the agent's whole life. The kernel lets go of it when
the process ends, however it ends (SIGKILL, OOM, a crash), so a lock is never stale and
nothing has to be cleaned up at the next start. The PID is written into the file once
the lock is held, so that a second agent is refused with the running one's PID.

**Serial ports** (:class:`UucpLock` here, ``exclusive=True`` in
:mod:`agent.modem.transport`): serial programs on Linux follow two conventions, and a
port is only safe when both are honoured:

- a UUCP lock file ``/run/lock/LCK..ttyUSB0`` holding the owner's PID in ASCII (``%10d\\n``,
  the FHS format): minicom, gammu/gammu-smsd (``UseLocking``), cu, uucp and lockdev all
  write and check it; a file whose PID no longer runs is stale and taken over;
- ``flock`` on the device itself: picocom, pyserial's ``exclusive=True`` and every other
  simedge process (a second agent, ``simedge scan``). Its holder is read from
  ``/proc/locks`` to say who it is.

Neither is enforced by the kernel: they keep out programs that ask, which is every
program that talks to a modem by design. ModemManager asks neither; the udev rules in
``deploy/udev/`` keep it off the modems instead.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from agent.errors import AlreadyRunning, PortBusy
from agent.logs import get_logger

log = get_logger("locking")

LOCK_FILE_NAME = "simedge.lock"
UUCP_LOCK_DIR = Path("/run/lock")  # /var/lock is a link to it on Debian and Raspberry Pi OS
UUCP_TAKEOVER_ATTEMPTS = 3  # stale lock removed, then another program may win the race
PROC_LOCKS = Path("/proc/locks")
PROC_LOCKS_LIMIT = 1 << 20  # bytes of /proc/locks read: thousands of locks fit


def process_name(pid: int) -> str:
    """The command name of ``pid`` (``/proc/PID/comm``), or ``?`` when it cannot be read."""
    try:
        return Path(f"/proc/{pid}/comm").read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return "?"


def describe(pid: int) -> str:
    """``minicom (PID 812)``: who holds a lock, as a person wants it said."""
    return f"{process_name(pid)} (PID {pid})"


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (signal 0 is sent to no one; EPERM means it does)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def flock_holders(path: str | os.PathLike[str]) -> list[int]:
    """PIDs holding a ``flock`` on the file ``path`` resolves to, from ``/proc/locks``
    (``1: FLOCK ADVISORY WRITE 812 00:05:1234 0 EOF``; waiters, marked ``->``, are not
    holders). Empty when nothing holds it or the table cannot be read."""
    try:
        info = os.stat(path)
        with PROC_LOCKS.open("rb") as table:
            text = table.read(PROC_LOCKS_LIMIT).decode("ascii", errors="replace")
    except OSError:
        return []
    wanted = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    holders = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK" or not fields[4].isdigit():
            continue
        if fields[5] == wanted:
            holders.append(int(fields[4]))
    return holders


def _pid_in(text: str) -> int | None:
    """The PID of a lock file: ASCII digits, surrounded by blanks (HDB/FHS format)."""
    text = text.strip()
    return int(text) if text.isdigit() and len(text) <= 10 else None


class DataDirLock:
    """The exclusive lock on a data folder; see the module docstring. Build it with
    :meth:`acquire`; :meth:`release` (or the end of the process) lets go."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, data_dir: Path) -> DataDirLock:
        """Lock ``data_dir`` (which must exist) for this process; raise AlreadyRunning
        with the holder's PID when another process holds it."""
        path = data_dir / LOCK_FILE_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        _lock_or_refuse(fd, path, data_dir)
        # The file is kept between runs: deleting it would let a third process lock a new
        # file while a second one still waits on the old one.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        return cls(path, fd)

    @staticmethod
    def check(data_dir: Path) -> None:
        """Raise AlreadyRunning when an agent holds ``data_dir``; for commands that must
        not run beside it but do not change its files (see :meth:`kept_from_agents`)."""
        with DataDirLock.kept_from_agents(data_dir):
            pass

    @staticmethod
    @contextlib.contextmanager
    def kept_from_agents(data_dir: Path) -> Iterator[None]:
        """Raise AlreadyRunning when an agent holds ``data_dir``; else hold its lock for
        the block, so that no agent starts on the files the block changes (an agent that
        tries is refused with this PID). Creates nothing: a lock file made by ``sudo
        simedge ...`` would belong to root and keep the agent's user from locking it."""
        path = data_dir / LOCK_FILE_NAME
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # flock needs no write access
        except FileNotFoundError:
            yield  # no agent ever ran on this folder
            return
        _lock_or_refuse(fd, path, data_dir)
        try:
            yield
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None


def _lock_or_refuse(fd: int, path: Path, data_dir: Path) -> None:
    """flock ``fd`` exclusively, or close it and raise AlreadyRunning with the holder."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            written = os.pread(fd, 32, 0).decode("ascii", errors="replace")
        finally:
            os.close(fd)
        # The holder may not have written its PID yet: the kernel's table knows it too.
        pid = _pid_in(written) or next(iter(flock_holders(path)), None)
        raise AlreadyRunning(str(data_dir), pid) from None
    except BaseException:
        os.close(fd)
        raise


def uucp_lock_name(device: str) -> str:
    """``LCK..ttyUSB0`` for ``/dev/ttyUSB0`` (links resolved first, so the by-path name
    and the tty share one lock); below ``/dev`` slashes become ``_`` (``LCK..pts_3``), as
    lockdev names them."""
    real = os.path.realpath(device)
    name = real[len("/dev/") :] if real.startswith("/dev/") else os.path.basename(real)
    return "LCK.." + name.replace("/", "_")


class UucpLock:
    """A UUCP lock file for one serial device; see the module docstring.

    When the lock folder is missing or not writable (a container, a system without
    ``/run/lock``) there is no such convention to honour there: :meth:`acquire` takes
    nothing and says so once in the debug log, and the flock still guards the port.
    """

    def __init__(self, device: str, lock_dir: Path = UUCP_LOCK_DIR) -> None:
        self.device = device
        self.path = lock_dir / uucp_lock_name(device)
        self.held = False

    def acquire(self) -> None:
        """Create the lock file with our PID; raise PortBusy naming the holder when a live
        process has it; take over a stale one (its PID is gone, or it is not a PID)."""
        if not os.access(self.path.parent, os.W_OK | os.X_OK):
            log.debug(
                "%s: no UUCP lock: %s is not a writable folder", self.device, self.path.parent
            )
            return
        mine = f"{os.getpid():>10}\n".encode("ascii")
        for _ in range(UUCP_TAKEOVER_ATTEMPTS):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            except FileExistsError:
                pid = self._holder()
                if pid is not None and pid_alive(pid):
                    raise PortBusy(
                        f"held by {describe(pid)} (lock file {self.path})",
                        self.device,
                        holder=describe(pid),
                    ) from None
                log.info("%s: stale lock file %s (PID %s) taken over", self.device, self.path, pid)
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
                continue
            try:
                os.write(fd, mine)
            finally:
                os.close(fd)
            self.held = True
            return
        raise PortBusy(f"lock file {self.path} keeps coming back", self.device, holder="?")

    def _holder(self) -> int | None:
        try:
            return _pid_in(self.path.read_text(encoding="ascii", errors="replace")[:64])
        except FileNotFoundError:
            return None  # removed meanwhile: the next attempt creates it
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise PortBusy(
                    f"lock file {self.path} exists and cannot be read", self.device, holder="?"
                ) from exc
            raise

    def release(self) -> None:
        """Remove the lock file if it is still ours (idempotent)."""
        if not self.held:
            return
        self.held = False
        with contextlib.suppress(OSError):
            if self._holder() == os.getpid():
                self.path.unlink()
