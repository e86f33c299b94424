"""``simedge db check`` and ``simedge db recover``: a damaged database and the way out.

``check`` runs SQLite's full ``PRAGMA integrity_check`` on the database, read-only (safe
beside a running agent): exit 0 when whole, 1 when damaged, with each problem on a line.
``recover`` (the agent stopped) copies what still reads into a new database and keeps the
damaged file beside it, renamed with the time; it prints what was saved per table and the
rowid ranges it could not read. See :mod:`agent.store.integrity` and docs/database.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from agent.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, add_config_argument, load_config

if TYPE_CHECKING:
    from agent.config import Config

HELP = "check the database (integrity_check) or recover what reads of a damaged one"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="PRAGMA integrity_check, read-only")
    add_config_argument(check, "for the data folder")
    recover = sub.add_parser(
        "recover", help="copy what reads into a new database; keep the damaged file"
    )
    add_config_argument(recover, "for the data folder")


def run(args: argparse.Namespace) -> int:

    name = f"simedge db {args.db_command}"
    config = load_config(args, name)
    if config is None:
        return EXIT_USAGE
    if not config.database.exists():
        print(f"{name}: no database at {config.database}", file=sys.stderr)
        return EXIT_FAILURE
    if args.db_command == "check":
        return _check(config.database)
    return _recover(config, name)


def _check(path: Path) -> int:
    from agent.store import integrity

    result = integrity.run_check(path, thorough=True)
    if result.unchecked is not None:
        print(f"{path}: cannot check it: {result.unchecked}", file=sys.stderr)
        return EXIT_FAILURE
    if result.ok:
        print(f"{path}: ok (integrity_check, {result.seconds:.1f} s)")
        return EXIT_OK
    print(f"{path}: damaged; {integrity.way_out(path)}")
    for problem in result.problems:
        print(f"  {problem}")
    return EXIT_FAILURE


def _recover(config: Config, name: str) -> int:
    from agent.control.client import call
    from agent.control.protocol import CheckHealth
    from agent.errors import AgentNotRunning, AlreadyRunning, ControlError, StoreError
    from agent.locking import DataDirLock
    from agent.store import integrity

    path = config.database
    try:
        call(config.control_socket, CheckHealth())
    except AgentNotRunning:
        pass  # the one case in which the file may be moved
    except ControlError:
        print(f"{name}: an agent answers on {config.control_socket}; stop it first")
        return EXIT_FAILURE
    else:
        print(f"{name}: the agent is running; stop it first (systemctl stop simedge)")
        return EXIT_FAILURE
    try:
        # No answer on the socket, yet an agent may hold the folder (opening the store,
        # or its socket elsewhere): the file must not move under it, nor one start now.
        with DataDirLock.kept_from_agents(config.site.data_dir):
            report = integrity.recover(path)
    except (AlreadyRunning, StoreError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"damaged file kept as {report.kept}")
    for table in report.tables:
        if table.error is not None:
            print(f"  {table.table:<17} not read: {table.error}")
            continue
        line = f"  {table.table:<17} {table.saved:>9,} rows"
        if table.unreadable:
            spans = ", ".join(f"{first}-{last}" for first, last in table.unreadable[:5])
            more = f" and {len(table.unreadable) - 5} more" if len(table.unreadable) > 5 else ""
            line += f"; rowids not readable: {spans}{more}"
        print(line)
    if not any(report.rows.values()):
        print(f"nothing could be read; the agent starts with a new {path.name}")
        return EXIT_OK
    print(f"recovered into {path} in {report.seconds:.1f} s")
    for what, count in report.mended.items():
        print(f"  {count:,} {what}")
    return EXIT_OK
