"""The arrows between packages point one way; these tests fail when one turns around.

- nothing in ``agent`` imports ``textual`` (the agent must run without the dashboard);
- ``agent.protocol`` imports no I/O: no asyncio, serial, sockets, database, HTTP, threads;
- ``tui`` reaches the agent only through ``agent.status``, the control client and schema,
  and ``agent.store.queries`` (the agent's own reads, on the file opened read-only).
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
    # agent.store.queries: the agent's own reads, shared with `simedge status`, so that
    # both say what the agent would.
    allowed = (
        "agent.status",
        "agent.control.client",
        "agent.control.protocol",
        "agent.errors",
        "agent.config",
        "agent.store",  # its queries only: see test_tui_reads_the_store_only_through_queries
    )
    offenders = {
        m for m in imported_modules(path) if m.startswith("agent") and not m.startswith(allowed)
    }
    assert not offenders, f"{path} imports {offenders}"


# -- the control schema is the only place an operation or an event is named ---------------

CONTROL_SCHEMA = ROOT / "agent" / "control" / "protocol.py"
# Calls whose first argument is an operation or an event kind, on any side.
CONTROL_CALLS = {"publish", "_publish", "_publish_later", "request", "call", "act"}
# Names a control op or event kind is compared with (``if op == "snapshot"``).
CONTROL_NAMES = {"op", "kind", "event"}


def control_names() -> set[str]:
    from agent.control.protocol import EventKind, Op

    return {str(member) for member in (*Op, *EventKind)}


def _constant(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _named(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
        return _constant(node.args[0])  # event.get("event")
    return None


def spelled_control_names(source: str, filename: str = "<source>") -> list[str]:
    """Where ``source`` spells a control op or event name as a string: as the first
    argument of a publish/request/call/act, as the value of an "op" or "event" key, or
    compared with a variable named op, kind or event."""
    names = control_names()
    found = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        spelled: list[ast.AST | None] = []
        if isinstance(node, ast.Call) and node.args:
            function = node.func
            called = function.attr if isinstance(function, ast.Attribute) else None
            called = called or (function.id if isinstance(function, ast.Name) else None)
            if called in CONTROL_CALLS:
                spelled.append(node.args[0])
        elif isinstance(node, ast.Dict):
            spelled += [
                v
                for k, v in zip(node.keys, node.values, strict=True)
                if _constant(k) in ("op", "event")
            ]
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_named(side) in CONTROL_NAMES for side in sides):
                spelled += sides
        for value in spelled:
            if (text := _constant(value)) in names:
                found.append(f"{filename}:{getattr(value, 'lineno', '?')}: {text!r}")
    return found


@pytest.mark.parametrize(
    "path",
    [p for p in python_files("agent") + python_files("tui") if p != CONTROL_SCHEMA],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_control_names_are_spelled_only_in_the_schema(path: Path) -> None:
    # The agent, the dashboard and the CLI name operations and events through the types of
    # agent/control/protocol.py (Op, EventKind, the request classes), never as strings: a
    # renamed or removed op is then an import error, not a request nobody answers.
    assert not spelled_control_names(path.read_text(), str(path.relative_to(ROOT)))


def test_the_control_name_check_sees_each_way_of_spelling_a_name() -> None:
    source = """
client.request("snapshot")
self.site_app.act("rescan", "rescan started")
server.publish("modem", data)
line = encode({"event": "overflow", "data": None})
if op == "set_number":
    pass
if event.get("event") == "subscribed":
    pass
log_event("modem", "modem ready")          # a log line's kind: not the control's
status = {"state": "ok", "kind": "outbox"}  # a key other than op or event
"""
    found = sorted(spelled_control_names(source))
    assert found == [
        "<source>:2: 'snapshot'",
        "<source>:3: 'rescan'",
        "<source>:4: 'modem'",
        "<source>:5: 'overflow'",
        "<source>:6: 'set_number'",
    ]


# -- the dashboard reads the database with the agent's queries, not its own SQL -----------


@pytest.mark.parametrize("path", python_files("tui"), ids=lambda p: str(p.relative_to(ROOT)))
def test_tui_reads_the_store_only_through_queries(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    offenders = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "agent.store":
                modules = [f"agent.store.{alias.name}" for alias in node.names]
            else:
                modules = [node.module]
        else:
            continue
        offenders |= {
            m
            for m in modules
            if m.split(".")[0] in ("peewee", "sqlite3")
            or (m.startswith("agent.store") and m != "agent.store.queries")
        }
    assert not offenders, f"{path} reads the store around agent.store.queries: {offenders}"
