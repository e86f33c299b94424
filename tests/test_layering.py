"""The arrows between packages point one way; these tests fail when one turns around.

- nothing in ``agent`` imports ``textual`` (the agent must run without the dashboard);
- ``agent.protocol`` imports no I/O: no asyncio, serial, sockets, database, HTTP, threads;
- ``tui`` reaches the agent only through ``agent.status``, the control client and
  ``agent.readonly`` (the database read with the standard library only).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN_IN_PROTOCOL = {
    "asyncio",
    "serial",
    "serial_asyncio_fast",
    "socket",
    "selectors",
    "threading",
    "subprocess",
    "sqlite3",
    "peewee",
    "httpx",
    "uvicorn",
    "tenacity",
    "os",
    "time",
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def python_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", python_files("agent"), ids=lambda p: str(p.relative_to(ROOT)))
def test_agent_never_imports_textual(path: Path) -> None:
    offenders = {m for m in imported_modules(path) if m.split(".")[0] in ("textual", "rich", "tui")}
    assert not offenders, f"{path} imports {offenders}"


@pytest.mark.parametrize(
    "path", python_files("agent/protocol"), ids=lambda p: str(p.relative_to(ROOT))
)
def test_protocol_layer_is_pure(path: Path) -> None:
    offenders = {m for m in imported_modules(path) if m.split(".")[0] in FORBIDDEN_IN_PROTOCOL}
    agent_layers = {
        m
        for m in imported_modules(path)
        if m.startswith("agent.") and not m.startswith(("agent.protocol", "agent.errors"))
    }
    assert not offenders, f"{path} imports I/O modules {offenders}"
    assert not agent_layers, f"{path} imports upper layers {agent_layers}"


def test_protocol_import_loads_no_io_at_run_time() -> None:
    code = (
        "import sys, agent.protocol, pkgutil, importlib\n"
        "for m in pkgutil.walk_packages(agent.protocol.__path__, 'agent.protocol.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(n for n in ('asyncio','serial','sqlite3','peewee','httpx','socket')"
        " if n in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        timeout=60,
    )
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("path", python_files("tui"), ids=lambda p: str(p.relative_to(ROOT)))
def test_tui_reaches_the_agent_only_through_status_and_control(path: Path) -> None:
    # agent.readonly: the database read with the standard library, shared with
    # `simedge status` so that both say what the agent would.
    allowed = (
        "agent.status",
        "agent.control.client",
        "agent.errors",
        "agent.config",
        "agent.readonly",
    )
    offenders = {
        m for m in imported_modules(path) if m.startswith("agent") and not m.startswith(allowed)
    }
    assert not offenders, f"{path} imports {offenders}"
