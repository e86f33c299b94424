"""Loaded by the agent process that :mod:`bench.cpu_anatomy` starts (this folder leads its
``PYTHONPATH``); does nothing unless ``SIMEDGE_BENCH_PROFILE`` names a file.

Then SIGUSR2 starts cProfile in the main thread (the event loop's) and the next SIGUSR2
stops it and writes the statistics to that file: the bench profiles the steady state only,
not the start-up, whose calls (64 modems opened and probed) would swamp the per-SMS ones.
The profiler's clock is the thread's CPU time, so a function is charged what it spent on the
CPU, not the time the kernel let another process run in the middle of it (a loopback send
wakes the stand-in).
"""

import os
import signal
import time

_OUT = os.environ.get("SIMEDGE_BENCH_PROFILE")

if _OUT:
    import cProfile

    _running: list[cProfile.Profile] = []

    def _toggle(_signum: int, _frame: object) -> None:
        if not _running:
            profile = cProfile.Profile(time.thread_time)
            _running.append(profile)
            profile.enable()
            return
        profile = _running.pop()
        profile.disable()
        profile.dump_stats(_OUT + ".part")
        os.replace(_OUT + ".part", _OUT)  # whole, or not there

    signal.signal(signal.SIGUSR2, _toggle)
