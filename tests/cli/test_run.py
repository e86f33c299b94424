"""`simedge run`'s process: the bounds it sets on its threads' memory."""

from __future__ import annotations

import asyncio
import threading

import pytest

from agent.cli.run import IO_THREADS, MALLOC_ARENAS, use_io_threads
from tests.child import python_output


async def test_blocking_calls_run_on_at_most_io_threads_threads() -> None:
    loop = asyncio.get_running_loop()
    use_io_threads(loop)
    threads_before = threading.active_count()
    gate = threading.Event()
    lock = threading.Lock()
    running = 0
    most = 0
    pool_full = asyncio.Event()

    def blocking_call() -> str:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            if running == IO_THREADS:
                loop.call_soon_threadsafe(pool_full.set)
        gate.wait(timeout=30)
        with lock:
            running -= 1
        return threading.current_thread().name

    calls = [asyncio.ensure_future(asyncio.to_thread(blocking_call)) for _ in range(3 * IO_THREADS)]
    try:
        async with asyncio.timeout(10):
            await pool_full.wait()
        # A pool starts its threads as work is submitted: all 12 calls are submitted.
        assert threading.active_count() - threads_before == IO_THREADS
    finally:
        gate.set()
    names = await asyncio.gather(*calls)
    assert most == IO_THREADS
    assert len(set(names)) == IO_THREADS
    assert all(name.startswith("simedge-io") for name in names)


def test_threads_allocate_in_at_most_malloc_arenas_arenas() -> None:
    # Eight threads that allocate, then glibc's own account of its arenas (malloc_info).
    code = (
        "import ctypes, sys, tempfile, threading\n"
        "from agent.cli.run import limit_malloc_arenas\n"
        "if sys.argv[1] == 'limit' and not limit_malloc_arenas():\n"
        "    print('not glibc'); sys.exit()\n"
        "def allocate():\n"
        "    kept = [bytearray(200) for _ in range(20000)]\n"
        "threads = [threading.Thread(target=allocate) for _ in range(8)]\n"
        "for thread in threads: thread.start()\n"
        "for thread in threads: thread.join()\n"
        "libc = ctypes.CDLL(None)\n"
        "libc.fopen.restype = ctypes.c_void_p\n"
        "with tempfile.NamedTemporaryFile('r') as report:\n"
        "    stream = ctypes.c_void_p(libc.fopen(report.name.encode(), b'w'))\n"
        "    libc.malloc_info(0, stream)\n"
        "    libc.fclose(stream)\n"
        "    print(report.read().count('<heap nr='))\n"
    )

    limited = python_output(code, "limit")
    if limited == "not glibc":
        pytest.skip("the C library is not glibc: no arenas to limit")
    assert int(limited) <= MALLOC_ARENAS
    assert int(python_output(code, "default")) > MALLOC_ARENAS  # what the limit is there for
