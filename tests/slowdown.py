"""How much slower than a native run the machine running the tests is.

A few tests wait on a whole process (a Python interpreter starting, importing the agent,
opening its modems) with a limit that is a guess at how long that takes natively. Under
qemu user-mode emulation (`make test-arm`) the same start takes several times as long,
and the guess would fail a correct agent. `SIMEDGE_TEST_SLOWDOWN` (a number from 1 to
MAX_SLOWDOWN, 1 when unset) multiplies those limits; only deploy/test-arm.sh sets it, so
native runs keep their limits. Waits on the agent's own timing (a retry, a debounce, a
deadline it promises) never scale: only the start and stop of a whole process do.
"""

from __future__ import annotations

import os

VARIABLE = "SIMEDGE_TEST_SLOWDOWN"
# 10× covers armhf under qemu-user on a loaded machine (13× on pure-Python protocol code
# at worst, less for the rest); past that a limit stops meaning anything.
MAX_SLOWDOWN = 10.0


def slowdown() -> float:
    """The factor from the environment: 1 when unset; a clear error when not a number
    from 1 to MAX_SLOWDOWN."""
    raw = os.environ.get(VARIABLE)
    if raw is None or raw == "":
        return 1.0
    try:
        factor = float(raw)
    except ValueError:
        raise ValueError(f"{VARIABLE}={raw!r}: not a number (a factor such as 6)") from None
    if not 1.0 <= factor <= MAX_SLOWDOWN:
        raise ValueError(f"{VARIABLE}={raw!r}: must be from 1 to {MAX_SLOWDOWN:g}")
    return factor


def process_limit(native_seconds: float) -> float:
    """A limit on a whole process's start or stop, NATIVE_SECONDS on a native run."""
    return native_seconds * slowdown()
