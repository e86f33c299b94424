"""``simedge tui``: the dashboard, a separate process that talks to the agent's socket."""

from __future__ import annotations

import argparse
import importlib
import os
import select
import signal
import sys
import threading

from agent.cli import EXIT_OK, EXIT_USAGE, add_config_argument

HELP = "the dashboard: the site at a glance, over SSH (talks to the running agent)"


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser, "for the socket and database paths")
    parser.add_argument("--socket", metavar="PATH", help="control socket (overrides --config)")
    parser.add_argument(
        "--db", metavar="PATH", help="the agent's database, read when it is down (overrides)"
    )


NO_TERMINAL = (
    "simedge tui: needs a terminal and has none (connect with ssh -t, not ssh -T or a command)"
)


def run(args: argparse.Namespace) -> int:
    # Without a terminal the dashboard would write escape codes into a pipe and, once the
    # other end is gone, go on drawing for nobody: refuse, in one line a script can read.
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print(NO_TERMINAL, file=sys.stderr)
        return EXIT_USAGE
    end_when_the_terminal_goes()

    from agent import config as config_module
    from agent.errors import ConfigError

    socket_path, db_path = args.socket, args.db
    if socket_path is None or db_path is None:
        # Paths only: the dashboard login may read simedge.toml but not the secrets.
        try:
            config_socket, config_db = config_module.load_local_paths(args.config)
        except ConfigError as exc:
            print(f"simedge: {exc} (or give --socket and --db)", file=sys.stderr)
            return EXIT_USAGE
        socket_path = socket_path or config_socket
        db_path = db_path or config_db

    # Looked up by name: the agent's packages never import the dashboard (tests/test_layering
    # checks it), so the agent runs on a system without Textual; only this command needs it.
    create_app = importlib.import_module("tui.app").create_app
    create_app(socket_path, db_path).run()
    return EXIT_OK


def end_when_the_terminal_goes() -> None:
    """End the process when its terminal goes away, so no dashboard outlives its SSH login.

    A closed terminal sends SIGHUP, whose default action ends the process; it is restored
    here because a parent (nohup, some session managers) may have set it to be ignored.
    A hangup seen on stdin (the terminal's other side closed without a SIGHUP reaching
    us) is turned into one by a thread that only polls for it and never reads, so the
    dashboard's own reading of keys is untouched."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    threading.Thread(target=_hang_up_with_stdin, name="stdin-hangup", daemon=True).start()


def _hang_up_with_stdin() -> None:
    poller = select.poll()
    poller.register(sys.stdin.fileno(), 0)  # no events asked: POLLHUP/POLLERR always come
    while True:
        for _fd, events in poller.poll():
            if events & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                os.kill(os.getpid(), signal.SIGHUP)
                return
