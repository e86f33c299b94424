"""A CPU limit the size of a Raspberry Pi for the processes a benchmark puts under it.

``with cpu_limit(0.25) as limit:`` makes a cgroup of the cpu controller allowed a quarter of
one core, and ``limit.add(pid)`` moves a process (all its threads; children it starts
later inherit the cgroup) into it. On the way out, however the body ends (an error,
Ctrl-C), the processes still in it go back to the cgroup it was made under and the
directory is removed.

Both cgroup versions, found from ``/proc/self/mountinfo`` and ``/proc/self/cgroup``:

- v1: a child of the ``cpu`` hierarchy, ``cpu.cfs_quota_us`` = fraction x
  ``cpu.cfs_period_us``, throttling in ``cpu.stat`` as ``nr_throttled`` and
  ``throttled_time`` (ns);
- v2: a child with ``cpu.max`` = ``"QUOTA PERIOD"``, after ``+cpu`` is written to the
  parent's ``cgroup.subtree_control`` when it is not enabled there yet; throttling in
  ``cpu.stat`` as ``nr_throttled`` and ``throttled_usec``.

The cgroup is made under the one this process is in, so it works inside a container's
delegated cgroup as well as at the root. Where it cannot be made (not root, no cpu
controller mounted, v2 refusing to enable it) nothing is raised: ``limit.unavailable``
says why, for the benchmark's rows to say the limited run was skipped and why.
systemd-run would do the same where systemd is PID 1, which it is not on every machine
this bench runs on (issue 19).
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_FRACTION = 0.25  # a Pi 3/4 core is several times slower than a server's
PERIOD_US = 100_000  # the kernel's default CFS period
MIN_QUOTA_US = 1_000  # the kernel refuses a quota under 1 ms
# Moving the last processes out races with one of them forking: a child made after the
# listing is still inside, so the removal is tried again, this many times.
REMOVE_ATTEMPTS = 20

MOUNTINFO = Path("/proc/self/mountinfo")
OWN_CGROUP = Path("/proc/self/cgroup")


@dataclass(frozen=True)
class Hierarchy:
    """Where a new cpu cgroup goes: its version and the directory to make it in."""

    version: int  # 1 or 2
    parent: Path


def find_hierarchy(mountinfo: str, own_cgroup: str) -> Hierarchy | str:
    """The cpu controller's hierarchy and this process's place in it, or why there is none.

    ``mountinfo`` is the text of ``/proc/self/mountinfo``, ``own_cgroup`` of
    ``/proc/self/cgroup``. A v1 ``cpu`` hierarchy is preferred: on a hybrid machine the v2
    tree is mounted too but the cpu controller is bound to v1 and v2 cannot have it.
    """
    v1: tuple[Path, str] | None = None  # mount point, the mount's root within the tree
    v2: tuple[Path, str] | None = None
    for line in mountinfo.splitlines():
        fields, _, after = line.partition(" - ")
        mount = fields.split()
        described = after.split()
        if len(mount) < 5 or len(described) < 3:
            continue
        fstype, options = described[0], described[2].split(",")
        if fstype == "cgroup" and "cpu" in options and v1 is None:
            v1 = Path(_unescape(mount[4])), _unescape(mount[3])
        elif fstype == "cgroup2" and v2 is None:
            v2 = Path(_unescape(mount[4])), _unescape(mount[3])
    paths: dict[str, str] = {}  # controller list ("" for v2) -> path
    for line in own_cgroup.splitlines():
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if number.isdigit():
            paths[controllers] = path
    if v1 is not None:
        own = next((p for c, p in paths.items() if "cpu" in c.split(",")), None)
        if own is None:
            return "the cpu cgroup v1 hierarchy is mounted, but /proc/self/cgroup has no cpu line"
        return Hierarchy(1, _inside(*v1, own))
    if v2 is not None and "" in paths:
        return Hierarchy(2, _inside(*v2, paths[""]))
    return "no cgroup cpu controller is mounted (neither a v1 cpu hierarchy nor cgroup2)"


def _unescape(field: str) -> str:
    """mountinfo writes a space, tab, newline or backslash in a path as octal escapes."""
    for escape, character in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(escape, character)
    return field


def _inside(mount_point: Path, mount_root: str, own: str) -> Path:
    """The directory of cgroup ``own`` under a mount of the tree's ``mount_root``.

    In a container the mount's root is the container's own cgroup and /proc/self/cgroup
    names it in full (or as "/"), so the part below the mount's root is what is kept.
    """
    if mount_root != "/" and (own == mount_root or own.startswith(mount_root + "/")):
        own = own[len(mount_root) :]
    return mount_point / own.lstrip("/")


@dataclass(frozen=True)
class Throttling:
    """The cgroup's ``cpu.stat``: CFS periods it ran in, and in how many it was held back."""

    periods: int
    throttled: int
    throttled_seconds: float

    def __sub__(self, earlier: Throttling) -> Throttling:
        return Throttling(
            self.periods - earlier.periods,
            self.throttled - earlier.throttled,
            self.throttled_seconds - earlier.throttled_seconds,
        )


class CpuLimit:
    """One cgroup with a CPU quota, or, when ``unavailable``, the reason there is none."""

    def __init__(
        self, fraction: float, *, path: Path | None = None, version: int = 0, why: str = ""
    ) -> None:
        self.fraction = fraction
        self.path = path
        self.version = version
        self.unavailable = why or None
        self.quota_us = round(fraction * PERIOD_US)

    @property
    def setting(self) -> str:
        """The kernel setting that holds the limit, as a person would look it up."""
        if self.version == 1:
            return f"cgroup v1 cpu.cfs_quota_us {self.quota_us}/{PERIOD_US}"
        return f'cgroup v2 cpu.max "{self.quota_us} {PERIOD_US}"'

    def add(self, pid: int) -> None:
        """Move process ``pid`` (every thread of it) into the cgroup."""
        if self.path is None:
            raise RuntimeError(f"no CPU limit to put PID {pid} under: {self.unavailable}")
        (self.path / "cgroup.procs").write_text(str(pid))

    def pids(self) -> list[int]:
        """The processes in the cgroup now."""
        if self.path is None:
            return []
        return [int(word) for word in (self.path / "cgroup.procs").read_text().split()]

    def throttling(self) -> Throttling:
        """Cumulative throttling since the cgroup was made (zeros when there is none)."""
        if self.path is None:
            return Throttling(0, 0, 0.0)
        stat: dict[str, int] = {}
        for line in (self.path / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if value.strip().isdigit():
                stat[key] = int(value)
        if "throttled_usec" in stat:  # v2
            seconds = stat["throttled_usec"] / 1e6
        else:  # v1: nanoseconds
            seconds = stat.get("throttled_time", 0) / 1e9
        return Throttling(stat.get("nr_periods", 0), stat.get("nr_throttled", 0), seconds)

    def describe(self, who: str, throttled: Throttling) -> str:
        """The note a row carries: the limit, and how often it held ``who`` back."""
        if self.unavailable:
            return f"{who} NOT limited ({self.unavailable})"
        return (
            f"{who} limited to {self.fraction:g} of one core ({self.setting}), throttled "
            f"{throttled.throttled} times in {throttled.periods} periods "
            f"({throttled.throttled_seconds:.1f} s held back)"
        )


@contextlib.contextmanager
def cpu_limit(
    fraction: float = DEFAULT_FRACTION,
    name: str | None = None,
    *,
    mountinfo: Path = MOUNTINFO,
    own_cgroup: Path = OWN_CGROUP,
) -> Iterator[CpuLimit]:
    """A cgroup limited to ``fraction`` of one core for the body's length.

    ``name`` defaults to ``simedge-bench-PID`` (this process's), so two benches never share
    one. A cgroup that cannot be made yields a :class:`CpuLimit` whose ``unavailable``
    says why; a ``fraction`` outside (0, number of cores] is an error of the caller.
    """
    cores = os.cpu_count() or 1
    if not 0 < fraction <= cores:
        raise ValueError(f"CPU fraction {fraction!r}: expected a share of one core in (0, {cores}]")
    if round(fraction * PERIOD_US) < MIN_QUOTA_US:
        raise ValueError(
            f"CPU fraction {fraction!r}: under {MIN_QUOTA_US} us per {PERIOD_US} us period, "
            "which the kernel refuses"
        )
    name = name or f"simedge-bench-{os.getpid()}"
    try:
        found = find_hierarchy(mountinfo.read_text(), own_cgroup.read_text())
    except OSError as error:
        found = f"cannot read {error.filename}: {error.strerror}"
    if isinstance(found, str):
        yield CpuLimit(fraction, why=found)
        return
    limit, why = _make(found, name, fraction)
    if limit is None:
        yield CpuLimit(fraction, why=why)
        return
    try:
        yield limit
    finally:
        _remove(limit, found.parent)


def _make(found: Hierarchy, name: str, fraction: float) -> tuple[CpuLimit | None, str]:
    path = found.parent / name
    quota = round(fraction * PERIOD_US)
    try:
        if found.version == 2:
            _enable_cpu_v2(found.parent)
        path.mkdir()
    except OSError as error:
        reason = _reason(error, f"cannot make cgroup {path}")
        return None, reason
    limit = CpuLimit(fraction, path=path, version=found.version)
    try:
        if found.version == 1:
            (path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (path / "cpu.cfs_quota_us").write_text(str(quota))
        else:
            (path / "cpu.max").write_text(f"{quota} {PERIOD_US}")
    except OSError as error:
        _remove(limit, found.parent)
        return None, _reason(error, f"cannot set the CPU quota of {path}")
    return limit, ""


def _enable_cpu_v2(parent: Path) -> None:
    """v2 hands a controller to children only once the parent's subtree_control has it."""
    control = parent / "cgroup.subtree_control"
    if "cpu" in control.read_text().split():
        return
    if "cpu" not in (parent / "cgroup.controllers").read_text().split():
        raise OSError(errno.ENOENT, "the cpu controller is not available here", str(parent))
    control.write_text("+cpu")


def _reason(error: OSError, doing: str) -> str:
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{doing}: {error.strerror} (making a cgroup needs root)"
    if error.errno == errno.EBUSY:
        return (
            f"{doing}: {error.strerror} (cgroup v2 does not give a controller to the "
            "children of a cgroup that has processes of its own: run the bench from a leaf)"
        )
    return f"{doing}: {error.strerror or error}"


def _remove(limit: CpuLimit, parent: Path) -> None:
    """Processes left inside go back to ``parent``, then the directory is removed."""
    assert limit.path is not None
    for attempt in range(REMOVE_ATTEMPTS):
        for pid in limit.pids():
            # a process that exited since the listing is gone from the cgroup anyway
            with contextlib.suppress(ProcessLookupError):
                (parent / "cgroup.procs").write_text(str(pid))
        try:
            limit.path.rmdir()
            return
        except OSError as error:
            if error.errno != errno.EBUSY or attempt == REMOVE_ATTEMPTS - 1:
                raise
            time.sleep(0.01)  # a process forked after the listing: list again
