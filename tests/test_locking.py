"""The data folder's lock and the UUCP port lock files (issue 14, item 3), held by real
other processes."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from agent.errors import AlreadyRunning, PortBusy
from agent.locking import DataDirLock, UucpLock, flock_holders, process_name, uucp_lock_name
from tests.locks_helpers import HOLD_DATA_DIR, HOLD_NOTHING, holder


def test_a_second_process_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    with holder(HOLD_DATA_DIR, str(tmp_path)) as child:
        with pytest.raises(AlreadyRunning) as refused:
            DataDirLock.acquire(tmp_path)
        assert refused.value.pid == child.pid
        assert str(refused.value).startswith(
            f"{tmp_path}: another simedge agent (PID {child.pid}) is already running"
        )
        assert (tmp_path / "simedge.lock").read_text() == f"{child.pid}\n"
    DataDirLock.acquire(tmp_path).release()  # let go when the holder ended


def test_a_sigkilled_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    with holder(HOLD_DATA_DIR, str(tmp_path)) as child:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        assert (tmp_path / "simedge.lock").read_text() == f"{child.pid}\n"  # the file stays
        lock = DataDirLock.acquire(tmp_path)  # the lock went with the process
        assert (tmp_path / "simedge.lock").read_text() == f"{os.getpid()}\n"
        lock.release()


def test_in_one_process_the_lock_is_exclusive_too_and_release_frees_it(tmp_path: Path) -> None:
    lock = DataDirLock.acquire(tmp_path)
    with pytest.raises(AlreadyRunning):
        DataDirLock.acquire(tmp_path)
    lock.release()
    lock.release()  # idempotent
    DataDirLock.acquire(tmp_path).release()


def test_the_holder_is_found_in_the_kernels_table_when_the_file_has_no_pid(
    tmp_path: Path,
) -> None:
    with holder(HOLD_DATA_DIR, str(tmp_path)) as child:
        assert flock_holders(tmp_path / "simedge.lock") == [child.pid]
        (tmp_path / "simedge.lock").write_text("")  # as between its flock and its write
        with pytest.raises(AlreadyRunning) as refused:
            DataDirLock.acquire(tmp_path)
        assert refused.value.pid == child.pid
    assert flock_holders(tmp_path / "simedge.lock") == []


def test_uucp_lock_file_names_follow_lockdev(tmp_path: Path) -> None:
    link = tmp_path / "by-path-link"
    link.symlink_to("/dev/ttyUSB0")
    assert uucp_lock_name("/dev/ttyUSB0") == "LCK..ttyUSB0"
    assert uucp_lock_name(str(link)) == "LCK..ttyUSB0"
    assert uucp_lock_name("/dev/pts/3") == "LCK..pts_3"


def test_uucp_lock_is_written_in_the_fhs_format_and_removed_when_released(
    tmp_path: Path,
) -> None:
    lock = UucpLock("/dev/ttyUSB7", lock_dir=tmp_path)
    lock.acquire()
    assert (tmp_path / "LCK..ttyUSB7").read_bytes() == f"{os.getpid():>10}\n".encode()
    lock.release()
    assert not (tmp_path / "LCK..ttyUSB7").exists()


def test_a_uucp_lock_of_a_live_process_refuses_naming_it(tmp_path: Path) -> None:
    with holder(HOLD_NOTHING) as child:
        (tmp_path / "LCK..ttyUSB1").write_text(f"{child.pid:>10}\n")
        with pytest.raises(PortBusy) as busy:
            UucpLock("/dev/ttyUSB1", lock_dir=tmp_path).acquire()
        name = process_name(child.pid)
        assert busy.value.holder == f"{name} (PID {child.pid})"
        assert f"held by {name} (PID {child.pid})" in str(busy.value)
        assert str(busy.value).startswith("/dev/ttyUSB1: ")
    # Its owner's file is not ours to remove while it runs; once it is gone, it is stale.
    lock = UucpLock("/dev/ttyUSB1", lock_dir=tmp_path)
    lock.acquire()
    assert (tmp_path / "LCK..ttyUSB1").read_text().strip() == str(os.getpid())
    lock.release()


@pytest.mark.parametrize("content", ["", "not a pid\n", "\x00\x00\x01\x00", "99999999999\n"])
def test_a_stale_or_unreadable_uucp_lock_is_taken_over(tmp_path: Path, content: str) -> None:
    (tmp_path / "LCK..ttyUSB2").write_text(content)
    lock = UucpLock("/dev/ttyUSB2", lock_dir=tmp_path)
    lock.acquire()
    assert lock.held
    lock.release()


def test_a_release_never_removes_someone_elses_lock_file(tmp_path: Path) -> None:
    lock = UucpLock("/dev/ttyUSB3", lock_dir=tmp_path)
    lock.acquire()
    (tmp_path / "LCK..ttyUSB3").write_text(f"{1:>10}\n")  # taken over meanwhile
    lock.release()
    assert (tmp_path / "LCK..ttyUSB3").exists()


def test_without_a_writable_lock_folder_there_is_no_lock_file_to_honour(tmp_path: Path) -> None:
    lock = UucpLock("/dev/ttyUSB4", lock_dir=tmp_path / "missing")
    lock.acquire()
    assert not lock.held
    lock.release()
