"""``simedge tui``: the dashboard, a separate process that talks to the agent's socket."""

from __future__ import annotations

import argparse
import importlib
import sys

from agent.cli import EXIT_OK, EXIT_USAGE, add_config_argument

HELP = "the dashboard: the site at a glance, over SSH (talks to the running agent)"


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser, "for the socket and database paths")
    parser.add_argument("--socket", metavar="PATH", help="control socket (overrides --config)")
    parser.add_argument(
        "--db", metavar="PATH", help="the agent's database, read when it is down (overrides)"
    )


def run(args: argparse.Namespace) -> int:
    from agent import config as config_module
    from agent.errors import ConfigError

    socket_path, db_path = args.socket, args.db
    if socket_path is None or db_path is None:
        try:
            config = config_module.load(args.config)
        except ConfigError as exc:
            print(f"simedge: {exc} (or give --socket and --db)", file=sys.stderr)
            return EXIT_USAGE
        socket_path = socket_path or config.control_socket
        db_path = db_path or config.database

    # Looked up by name: the agent's packages never import the dashboard (tests/test_layering
    # checks it), so the agent runs on a system without Textual; only this command needs it.
    create_app = importlib.import_module("tui.app").create_app
    create_app(socket_path, db_path).run()
    return EXIT_OK
