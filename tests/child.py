"""Python code run in a child interpreter: for what one process must (not) have loaded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def python_output(code: str, *args: str) -> str:
    """The standard output of ``python -c code args`` run from the repository, stripped;
    raises CalledProcessError (with its stderr) when the child fails."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        timeout=60,
    ).stdout.strip()
