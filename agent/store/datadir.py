"""The data folder: private to the agent, and the agent's alone.

Whatever starts the agent (systemd with its ``UMask=``, a shell with umask 022, cron),
what it writes is readable by its own user and group only: ``simedge run`` sets the umask
:data:`AGENT_UMASK` itself, the folder is made :data:`DATA_DIR_MODE`, and the database's
files end up 0640 or stricter (SQLite gives ``-wal`` and ``-shm`` the database file's own
mode).

An existing folder or database file that is looser and belongs to the agent's user is
tightened, with a warning: it is what an older start outside systemd left behind, and
every SMS of the site is in it. One that belongs to someone else is left alone (a person
set it up so on purpose) and only warned about.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from agent.errors import StoreError
from agent.locking import DataDirLock
from agent.logs import get_logger

log = get_logger("store.datadir")

AGENT_UMASK = 0o027  # no write for the group, nothing for others
DATA_DIR_MODE = 0o750
DATABASE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def make(data_dir: Path) -> None:
    """Create ``data_dir`` (and missing parents) with mode 0750, whatever the umask."""
    try:
        data_dir.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"{data_dir}: cannot create the data folder: {exc}") from exc


def tighten(path: Path) -> None:
    """Take group write and every access of others from ``path`` if it is the agent's."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    mode = stat.S_IMODE(info.st_mode)
    if not mode & AGENT_UMASK:
        return
    if info.st_uid != os.geteuid():
        log.warning(
            "%s: mode %04o lets others read it, and it is not ours (uid %d) to change",
            path,
            mode,
            info.st_uid,
        )
        return
    try:
        os.chmod(path, mode & ~AGENT_UMASK)
    except OSError as exc:
        raise StoreError(f"{path}: cannot make it private (mode {mode:04o}): {exc}") from exc
    log.warning("%s: mode %04o tightened to %04o", path, mode, mode & ~AGENT_UMASK)


def claim(data_dir: Path, database: Path) -> DataDirLock:
    """Make the data folder private and lock it for this process: raise AlreadyRunning
    (with the running agent's PID) when another agent has it."""
    make(data_dir)
    tighten(data_dir)
    try:
        lock = DataDirLock.acquire(data_dir)
    except OSError as exc:
        raise StoreError(f"{data_dir}: cannot lock the data folder: {exc}") from exc
    for suffix in DATABASE_SUFFIXES:
        tighten(database.with_name(database.name + suffix))
    return lock
