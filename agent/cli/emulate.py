"""``simedge emulate …``: the emulated world (OnlineSim stand-in, modems on ptys).

Each module named in ``MODULES`` exposes ``SUBCOMMANDS``: a dict of name ->
``(help, configure(parser), run(args) -> int)``.
"""

from __future__ import annotations

import argparse
import importlib

HELP = "run the emulated world: the OnlineSim stand-in and modems on pseudo-terminals"

MODULES = [
    "agent.cli.emulate_onlinesim",
    "agent.cli.emulate_modems",
]


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="emulate_command", metavar="WHAT", required=True)
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name, (help_text, configure_sub, run_sub) in module.SUBCOMMANDS.items():
            command = sub.add_parser(name, help=help_text, description=help_text)
            configure_sub(command)
            command.set_defaults(handler=run_sub)


def run(args: argparse.Namespace) -> int:  # pragma: no cover - argparse routes to handler
    raise AssertionError("argparse dispatches emulate subcommands to their own handler")
