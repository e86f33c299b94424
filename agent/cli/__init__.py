"""The ``simedge`` command.

Each subcommand lives in its own module of this package and exposes ``HELP`` (one line for
``simedge --help``), ``configure(parser)`` and ``run(args) -> int``. Those modules import
their heavy dependencies inside ``run`` so that every command starts fast and
``simedge decode`` never loads the agent, the database or the dashboard.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, TypeVar

from agent import __version__

if TYPE_CHECKING:  # loaded by the commands that need it, inside run()
    from agent.config import Config

T = TypeVar("T")

#: Whether the agent's event loop is uvloop's (see new_event_loop).
UVLOOP_INSTALLED = importlib.util.find_spec("uvloop") is not None

# name -> module under agent.cli; the order is the order of `simedge --help`.
COMMANDS: dict[str, str] = {
    "run": "run",
    "scan": "scan",
    "status": "status",
    "db": "db",
    "sim": "sim",
    "sims": "sims",
    "outbox": "outbox",
    "config": "settings",
    "block": "block",
    "decode": "decode",
    "emulate": "emulate",
    "demo": "demo",
    "tui": "tui",
}

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2  # also: configuration errors

DEFAULT_CONFIG = "/etc/simedge/simedge.toml"  # where deploy/install.sh puts it


def load_config(args: argparse.Namespace, command: str) -> Config | None:
    """The configuration ``--config`` names; None, with the reason printed as ``command:
    ...``, when it cannot be read (the caller exits with EXIT_USAGE)."""
    from agent.config import load
    from agent.errors import ConfigError

    try:
        return load(args.config)
    except ConfigError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return None


def add_config_argument(parser: argparse.ArgumentParser, purpose: str = "") -> None:
    """``--config FILE``, defaulting to the installed site's file; ``purpose`` says what
    the command reads from it."""
    what = f", {purpose}" if purpose else ""
    parser.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help=f"configuration file{what} (default {DEFAULT_CONFIG})",
    )


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The event loop the agent runs on: uvloop's (libuv) where it is installed, else
    asyncio's own.

    A forwarded SMS takes some thirteen turns of the loop (serial reads, the writer's
    commit, the upload); uvloop does a turn in C, which took 12-13 % off the agent's CPU
    per SMS (bench/RESULTS.md, "Issue 19, fourth step"). pyproject.toml installs it where
    PyPI has wheels (x86_64, aarch64); on 32-bit ARM its build would need autotools, so
    there the agent runs on asyncio's loop, as the whole-site tests also do
    (tests/conftest.py).
    """
    if not UVLOOP_INSTALLED:
        return asyncio.new_event_loop()
    import uvloop  # here, not at the top: `simedge decode` and the like never start a loop

    return uvloop.new_event_loop()


def run_on_event_loop(main: Coroutine[object, object, T]) -> T:
    """``asyncio.run(main)`` on the agent's event loop (``new_event_loop``)."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM, for commands that run until stopped (the agent,
    the demo, the emulators). Call it inside the running event loop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of ``command`` alone when it names one.

    A command's module is imported to configure its parser, so building all of them would
    load every command's module into every process: the agent would carry the emulated
    modems (``simedge emulate``'s choices come from them) for as long as it runs, 1.1 MiB
    of its resident memory with 128 modems (bench/RESULTS.md, "Issue 19: memory").
    """
    parser = argparse.ArgumentParser(
        prog="simedge",
        description="Edge agent for an OnlineSim reseller site on USB GSM modems.",
    )
    parser.add_argument("--version", action="version", version=f"simedge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = {command: COMMANDS[command]} if command in COMMANDS else COMMANDS
    for name, module_name in chosen.items():
        module = importlib.import_module(f"agent.cli.{module_name}")
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(command)
        command.set_defaults(handler=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # The command comes first (the only options before it are --help and --version); with
    # none or an unknown one, every command's parser is built to list them all.
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or EXIT_OK)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `simedge decode ... | head`
        sys.stderr.close()
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
