"""bench/cpulimit.py: a real cgroup made, a real process in it and held to its quota, and the
cgroup gone afterwards, also when the body raises. As root only (making a cgroup needs it);
the reading of mountinfo is tested everywhere on the layouts of v1, v2 and a container."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.cpulimit import PERIOD_US, CpuLimit, Hierarchy, cpu_limit, find_hierarchy

ROOT = Path(__file__).resolve().parents[2]

# A child that starts a thread, then on each line "spawn" starts a grandchild and prints its
# PID; on stdin's end it ends the grandchildren and exits. Nothing sleeps: all block on stdin.
CHILD = """
import subprocess, sys, threading
threading.Thread(target=threading.Event().wait, daemon=True).start()
kids = []
for line in sys.stdin:
    kid = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                           stdin=subprocess.PIPE)
    kids.append(kid)
    print(kid.pid, flush=True)
for kid in kids:
    kid.stdin.close()
    kid.wait()
"""


def _cgroup_of(pid: int, version: int) -> str:
    """The cpu cgroup path of ``pid`` (or of one thread, ``pid`` being a /proc/PID/task/TID)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if (version == 1 and "cpu" in controllers.split(",")) or (
            version == 2 and controllers == ""
        ):
            return path
    raise AssertionError(f"/proc/{pid}/cgroup has no cpu line")


def _threads_cgroups(pid: int, version: int) -> set[str]:
    return {_cgroup_of(int(tid.name), version) for tid in Path(f"/proc/{pid}/task").iterdir()}


@pytest.fixture
def limit_or_skip() -> None:
    if os.geteuid() != 0:
        pytest.skip("making a cgroup needs root")
    with cpu_limit(name=f"simedge-test-probe-{os.getpid()}") as probe:
        if probe.unavailable:
            pytest.skip(f"no CPU limit on this machine: {probe.unavailable}")


@pytest.fixture
def child() -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    with process:  # closes the pipes on the way out
        yield process
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=30)


def _name(request: pytest.FixtureRequest) -> str:
    return f"simedge-test-{os.getpid()}-{request.node.name}"[:80]


@pytest.mark.usefixtures("limit_or_skip")
def test_a_process_and_every_thread_go_in_and_a_later_child_inherits(
    child: subprocess.Popen[str], request: pytest.FixtureRequest
) -> None:
    assert child.stdin is not None
    assert child.stdout is not None
    with cpu_limit(0.25, name=_name(request)) as limit:
        assert limit.path is not None
        assert limit.path.is_dir()
        if limit.version == 1:
            assert (limit.path / "cpu.cfs_quota_us").read_text().strip() == "25000"
            assert (limit.path / "cpu.cfs_period_us").read_text().strip() == str(PERIOD_US)
        else:
            assert (limit.path / "cpu.max").read_text().split() == ["25000", str(PERIOD_US)]
        parent = _cgroup_of(os.getpid(), limit.version)
        inside = "/".join((parent.rstrip("/"), limit.path.name))

        limit.add(child.pid)
        assert _threads_cgroups(child.pid, limit.version) == {inside}  # both threads moved
        child.stdin.write("spawn\n")
        child.stdin.flush()
        grandchild = int(child.stdout.readline())
        assert _cgroup_of(grandchild, limit.version) == inside
        assert sorted(limit.pids()) == sorted([child.pid, grandchild])
        assert _cgroup_of(os.getpid(), limit.version) == parent  # the caller stays out
        path = limit.path

    assert not path.exists()
    # left alive inside: moved back where the cgroup was made, not killed
    assert child.poll() is None
    assert _threads_cgroups(child.pid, limit.version) == {parent}
    assert _cgroup_of(grandchild, limit.version) == parent


@pytest.mark.usefixtures("limit_or_skip")
def test_removed_when_the_body_raises(
    child: subprocess.Popen[str], request: pytest.FixtureRequest
) -> None:
    made: list[CpuLimit] = []

    def interrupted() -> None:
        with cpu_limit(name=_name(request)) as limit:
            made.append(limit)
            limit.add(child.pid)
            raise KeyboardInterrupt  # as Ctrl-C does

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    (limit,) = made
    assert limit.path is not None
    assert not limit.path.exists()
    assert child.poll() is None
    assert _cgroup_of(child.pid, limit.version) == _cgroup_of(os.getpid(), limit.version)


@pytest.mark.usefixtures("limit_or_skip")
def test_removed_while_a_process_inside_keeps_forking(request: pytest.FixtureRequest) -> None:
    """A child forked between the listing and its parent's move is still inside: the
    removal lists again (up to REMOVE_ATTEMPTS times) rather than failing with EBUSY."""
    forker = (
        "import os, sys\n"
        "sys.stdin.readline()\n"
        "said = False\n"
        "while True:\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        os._exit(0)\n"
        "    os.waitpid(pid, 0)\n"
        "    if not said:\n"
        "        print('forked', flush=True)\n"
        "        said = True\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", forker], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        try:
            with cpu_limit(name=_name(request)) as limit:
                limit.add(process.pid)
                process.stdin.write("go\n")
                process.stdin.flush()
                assert process.stdout.readline() == "forked\n"  # forking inside now
                path = limit.path
            assert path is not None
            assert not path.exists()
            assert _cgroup_of(process.pid, limit.version) == _cgroup_of(os.getpid(), limit.version)
        finally:
            process.kill()


@pytest.mark.usefixtures("limit_or_skip")
def test_the_quota_holds_and_the_throttling_is_counted(request: pytest.FixtureRequest) -> None:
    """A child that spins for 0.3 s of CPU gets at most 25 ms of each 100 ms period. At
    best it starts 25 ms before a period ends with that period's quota whole, and ends 25
    ms into its last one: 12 quotas over 12 periods, 10 of them whole, so at least
    10 x 100 + 2 x 25 = 1.05 s of wall time (0.3 s without the limit). The kernel hands
    out quota in slices of 5 ms, hence 10 ms of slack."""
    quota = 0.025
    cpu_needed = 0.3
    # counted from "go": the interpreter's own start-up, before it is inside, is not
    spin = (
        "import sys, time\n"
        "sys.stdin.readline()\n"
        "start = time.process_time()\n"
        f"while time.process_time() - start < {cpu_needed}:\n"
        "    pass\n"
        "print(time.process_time() - start, flush=True)\n"
    )
    with cpu_limit(0.25, name=_name(request)) as limit:
        before = limit.throttling()
        with subprocess.Popen(
            [sys.executable, "-c", spin], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        ) as process:
            assert process.stdin is not None
            assert process.stdout is not None
            limit.add(process.pid)  # before "go": it is inside before it spins
            started = time.monotonic()
            process.stdin.write("go\n")
            process.stdin.close()
            used = float(process.stdout.readline())
            took = time.monotonic() - started
            process.wait(timeout=30)
        throttled = limit.throttling() - before
    assert used >= cpu_needed
    periods = round(cpu_needed / quota)
    shortest = (periods - 2) * PERIOD_US / 1e6 + 2 * quota
    assert took >= shortest - 0.010, f"{used} s of CPU in {took} s of wall"
    assert throttled.throttled >= 1
    assert throttled.throttled_seconds > 0
    assert "throttled" in limit.describe("agent", throttled)


def test_not_root_gives_a_reason_not_an_error() -> None:
    """As nobody, the limit is not made and says why; the bench puts that in its rows."""
    if os.geteuid() != 0:
        pytest.skip("needs root to become another user")
    # the interpreter may live where nobody cannot read (/root/.pyenv): drop to nobody
    # once it and the module are loaded
    script = (
        "import os\n"
        "from bench.cpulimit import cpu_limit\n"
        "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
        "with cpu_limit() as limit:\n"
        "    print(limit.unavailable)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    reason = done.stdout.strip()
    assert "needs root" in reason or "no cgroup cpu controller" in reason, reason


def test_a_fraction_outside_one_core_is_refused() -> None:
    with pytest.raises(ValueError, match=r"CPU fraction 0: expected a share"), cpu_limit(0):
        pass
    with pytest.raises(ValueError, match="under 1000 us"), cpu_limit(0.001):
        pass


def test_no_controller_is_a_reason() -> None:
    limit = CpuLimit(0.25, why="no cgroup cpu controller is mounted")
    assert limit.unavailable == "no cgroup cpu controller is mounted"
    assert limit.pids() == []
    assert limit.describe("agent", limit.throttling()) == (
        "agent NOT limited (no cgroup cpu controller is mounted)"
    )
    with pytest.raises(RuntimeError, match="no CPU limit to put PID 1 under"):
        limit.add(1)


# -- reading the layout ------------------------------------------------------------------

HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
HYBRID_OWN = "4:memory:/process_api/c6a2\n2:cpuacct:/\n1:cpu:/bench\n0::/\n"

V2 = """\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
29 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw
"""


def test_a_hybrid_machine_uses_v1s_cpu_hierarchy_below_its_own_cgroup() -> None:
    assert find_hierarchy(HYBRID, HYBRID_OWN) == Hierarchy(1, Path("/sys/fs/cgroup/cpu/bench"))


def test_co_mounted_cpu_and_cpuacct() -> None:
    mountinfo = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
    assert find_hierarchy(mountinfo, "3:cpu,cpuacct:/a b\n") == Hierarchy(
        1, Path("/sys/fs/cgroup/cpu,cpuacct/a b")
    )


def test_a_v2_machine() -> None:
    own = "0::/user.slice/user-1000.slice/session-2.scope\n"
    assert find_hierarchy(V2, own) == Hierarchy(
        2, Path("/sys/fs/cgroup/user.slice/user-1000.slice/session-2.scope")
    )


def test_a_container_whose_mount_root_is_its_own_cgroup() -> None:
    mountinfo = (
        "700 690 0:29 /docker/abc /sys/fs/cgroup/cpu ro,nosuid - cgroup cgroup rw,cpu,cpuacct\n"
        "701 690 0:30 /docker/abc/x\\040y /mnt/odd\\040name rw - cgroup2 cgroup2 rw\n"
    )
    assert find_hierarchy(mountinfo, "5:cpu,cpuacct:/docker/abc\n") == Hierarchy(
        1, Path("/sys/fs/cgroup/cpu")
    )
    assert find_hierarchy(mountinfo, "5:cpu,cpuacct:/docker/abc/inner\n") == Hierarchy(
        1, Path("/sys/fs/cgroup/cpu/inner")
    )
    only_v2 = mountinfo.splitlines()[1]
    assert find_hierarchy(only_v2, "0::/docker/abc/x y/z\n") == Hierarchy(
        2, Path("/mnt/odd name/z")
    )


def test_no_cgroup_mounted_says_so() -> None:
    reason = find_hierarchy("22 1 0:21 / /proc rw - proc proc rw\n", "0::/\n")
    assert reason == "no cgroup cpu controller is mounted (neither a v1 cpu hierarchy nor cgroup2)"
