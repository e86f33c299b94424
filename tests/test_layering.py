"""The arrows between packages point one way; these tests fail when one turns around.

- nothing in ``agent`` imports ``textual`` (the agent must run without the dashboard);
- ``agent.protocol`` imports no I/O: no asyncio, serial, sockets, database, HTTP, threads;
- ``tui`` reaches the agent only through ``agent.status``, the control client and schema,
  and ``agent.store.queries`` (the agent's own reads, on the file opened read-only).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.child import python_output

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
    assert python_output(code) == ""


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


# -- other packages' private names ---------------------------------------------------------
#
# A name with a leading underscore is its package's own business: the next release may
# rename or remove it (httpx's maintainers say so of theirs). Our code uses other
# libraries through their public, documented API only, and one package of ours does not
# import another's private names. Checked on the source, without running it:
#
# (a) no ``from X import _name`` (nor ``import X._mod``) from a third-party package, or
#     from another of our packages (agent, tui, tests, bench);
# (b) no ``obj._name`` where ``obj`` is a third-party thing: a module imported from
#     outside, or a name bound to what such a module made (``t = httpx.Transport()``, a
#     parameter annotated ``asyncio.StreamReader``, or an attribute of ``self`` assigned
#     from either), and no ``getattr(obj, "_name")`` (nor set/has/delattr) on anything but
#     ``self`` or ``cls``.
# Our own objects may be reached into within our code (tests do); the point is the
# boundary with code we do not release.

OUR_PACKAGES = ("agent", "tui", "tests", "bench")
# Modules whose names in an annotation say nothing about whose object it is.
TYPING_MODULES = ("typing", "typing_extensions", "collections", "types", "dataclasses", "abc")
ATTRIBUTE_FUNCTIONS = ("getattr", "setattr", "hasattr", "delattr")


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a chain of names and attributes, ``None`` for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def private_reaches(source: str, package: str) -> list[str]:
    """Where ``source``, a module of our ``package``, reaches another's private name."""
    tree = ast.parse(source)
    found: list[str] = []
    foreign: set[str] = set()  # names (or self.x) standing for a third-party thing
    typing_names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                root = alias.name.split(".")[0]
                if root in OUR_PACKAGES:
                    continue
                if any(is_private(part) for part in alias.name.split(".")):
                    found.append(f"line {node.lineno}: import {alias.name}")
                bound = alias.asname or root
                (typing_names if root in TYPING_MODULES else foreign).add(bound)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            root = node.module.split(".")[0]
            ours = root in OUR_PACKAGES
            if not ours and any(is_private(part) for part in node.module.split(".")):
                found.append(f"line {node.lineno}: from {node.module} import ...")
            for alias in node.names:
                if is_private(alias.name) and (not ours or root != package):
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
                if not ours:
                    bound = alias.asname or alias.name
                    (typing_names if root in TYPING_MODULES else foreign).add(bound)

    def rooted_in_foreign(node: ast.AST) -> bool:
        """Whether ``node`` is, or is got from, a foreign name (a call, an await, an
        attribute or an item of one)."""
        while True:
            if _dotted(node) in foreign:
                return True
            if isinstance(node, ast.Call):
                node = node.func
            elif isinstance(node, ast.Await | ast.Attribute | ast.Subscript):
                node = node.value
            else:
                return False

    def annotated_foreign(annotation: ast.AST | None) -> bool:
        if annotation is None:
            return False
        names = {n.id for n in ast.walk(annotation) if isinstance(n, ast.Name)}
        return bool(names & foreign)

    # Names bound to foreign things; repeated until nothing new (x = y, then z = x).
    while True:
        before = len(foreign)
        for node in ast.walk(tree):
            if isinstance(node, ast.arg) and annotated_foreign(node.annotation):
                foreign.add(node.arg)
            targets: list[ast.AST] = []
            if isinstance(node, ast.Assign) and rooted_in_foreign(node.value):
                targets = list(node.targets)
            elif isinstance(node, ast.AnnAssign) and (
                annotated_foreign(node.annotation)
                or (node.value is not None and rooted_in_foreign(node.value))
            ):
                targets = [node.target]
            while targets:
                target = targets.pop()
                if isinstance(target, ast.Tuple | ast.List):
                    targets.extend(target.elts)
                elif isinstance(target, ast.Starred):
                    targets.append(target.value)
                elif (dotted := _dotted(target)) is not None:
                    foreign.add(dotted)
        if len(foreign) == before:
            break

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            if rooted_in_foreign(node.value):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ATTRIBUTE_FUNCTIONS
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and is_private(node.args[1].value)
            and not (isinstance(node.args[0], ast.Name) and node.args[0].id in ("self", "cls"))
        ):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return sorted(set(found))


def our_python_files() -> list[Path]:
    return [path for package in OUR_PACKAGES for path in python_files(package)]


@pytest.mark.parametrize("path", our_python_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_other_packages_private_names(path: Path) -> None:
    package = path.relative_to(ROOT).parts[0]
    found = private_reaches(path.read_text(), package)
    assert not found, f"{path.relative_to(ROOT)} reaches private names: {found}"


# What the check must catch: the reaches into httpx, asyncio and uvicorn that the uplink
# and the webhook once made, and a test importing the agent's private helper.
PLANTED_REACHES = [
    pytest.param(
        "import httpx, httpcore\n"
        "def lane(pool: httpcore.AsyncConnectionPool) -> None:\n"
        "    transport = httpx.AsyncHTTPTransport()\n"
        "    transport._pool = pool\n",
        "transport._pool",
        id="httpx transport's _pool",
    ),
    pytest.param(
        "import asyncio\n"
        "class Stream:\n"
        "    def __init__(self, reader: asyncio.StreamReader) -> None:\n"
        "        self._reader = reader\n"
        "    def waiting(self) -> bool:\n"
        "        return bool(self._reader._buffer)\n",
        "self._reader._buffer",
        id="StreamReader's _buffer",
    ),
    pytest.param(
        "class Stream:\n    def waiting(self, reader):\n"
        "        return getattr(reader, '_buffer', b'')\n",
        "getattr(reader, '_buffer', b'')",
        id="getattr of a private name",
    ),
    pytest.param(
        "from uvicorn._types import ASGIApplication\n",
        "from uvicorn._types",
        id="a private module",
    ),
    pytest.param(
        "from httpx import _content\n",
        "import _content",
        id="a private name of a library",
    ),
    pytest.param(
        "import asyncio\nloop = asyncio.get_running_loop()\nloop._ready.clear()\n",
        "loop._ready",
        id="a private attribute of what a library returned",
    ),
    pytest.param(
        "from agent.cli.manage import _with_store\n",
        "import _with_store",
        id="another package of ours",
    ),
]


@pytest.mark.parametrize(("source", "expected"), PLANTED_REACHES)
def test_the_private_name_check_catches_planted_reaches(source: str, expected: str) -> None:
    found = private_reaches(source, "tests")
    assert any(expected in finding for finding in found), found


def test_the_private_name_check_lets_our_own_names_be() -> None:
    source = (
        "from agent.store import Store\n"
        "from tests.deploy.test_deploy_static import _tool\n"  # the same package
        "import asyncio\n"
        "class Pump:\n"
        "    def __init__(self, store: Store) -> None:\n"
        "        self._store = store\n"
        "        self._lock = asyncio.Lock()\n"
        "    def run(self, other: 'Pump') -> None:\n"
        "        self._store._database.execute_sql('select 1')\n"  # ours
        "        other._store.close()\n"
        "        getattr(self, '_lock')\n"
        "        print(_tool, asyncio.get_running_loop().time())\n"
    )
    assert private_reaches(source, "tests") == []


# Third-party classes our classes may subclass: those whose library documents subclassing
# as the way to extend it. uvicorn.Server (whose capture_signals, main_loop and shutdown
# were overridden) and uvicorn's H11Protocol were not: any release could change them.
DOCUMENTED_BASES = (
    "asyncio.Protocol",  # asyncio's low-level API: protocols are meant to be subclassed
    "enum.",
    "typing.",
    "logging.Handler",
    "logging.Filter",
    "logging.Formatter",
    "httpx.AsyncBaseTransport",  # httpx: custom transports
    "httpx.AsyncByteStream",
    "httpcore.AsyncNetworkBackend",  # httpcore: custom network backends
    "httpcore.AsyncNetworkStream",
    "peewee.",  # peewee: models and custom fields
    "prometheus_client.registry.Collector",  # prometheus_client: custom collectors
    "tenacity.wait.wait_base",  # tenacity: custom wait strategies
    "textual.",  # Textual: apps, screens, widgets and messages are subclassed
)


def third_party_bases(source: str) -> list[str]:
    """The third-party classes ``source``'s classes subclass, as dotted names."""
    tree = ast.parse(source)
    imported: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                imported[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    bases: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        for base in node.bases:
            dotted = _dotted(base.value if isinstance(base, ast.Subscript) else base)
            if dotted is None:
                continue
            root, _, rest = dotted.partition(".")
            full = imported.get(root)
            if full is None or full.split(".")[0] in OUR_PACKAGES:
                continue
            bases.append(f"{full}.{rest}" if rest else full)
    return bases


@pytest.mark.parametrize("path", our_python_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_third_party_classes_are_subclassed_only_where_documented(path: Path) -> None:
    undocumented = [
        base
        for base in third_party_bases(path.read_text())
        if not base.startswith(DOCUMENTED_BASES)
    ]
    assert not undocumented, f"{path.relative_to(ROOT)} subclasses {undocumented}"


def test_the_base_class_check_catches_uvicorns_internals() -> None:
    source = (
        "import uvicorn\n"
        "from uvicorn.protocols.http.h11_impl import H11Protocol\n"
        "class QuietServer(uvicorn.Server): ...\n"
        "class Guarded(H11Protocol): ...\n"
        "class Fine(httpx.AsyncBaseTransport): ...\n"  # not imported: not judged
    )
    found = [b for b in third_party_bases(source) if not b.startswith(DOCUMENTED_BASES)]
    assert found == ["uvicorn.Server", "uvicorn.protocols.http.h11_impl.H11Protocol"]


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
