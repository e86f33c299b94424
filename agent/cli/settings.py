"""``simedge config set SECTION.KEY``: one string key of a configuration file, set to the
text read from stdin, verbatim.

For scripts (the first-boot script, provisioning): the value never passes through a
command line (visible in ``ps``) or a shell's quoting, and it is checked against the
schema and written as a TOML string by :func:`agent.config.set_string`, so ``&``, ``#``,
backslashes and quotes arrive as they were. One trailing newline is dropped (``echo``
adds one); a value with any other line break is refused: no key takes one.
Exit 0 when written, 2 with one line naming the file, the key and the problem.
"""

from __future__ import annotations

import argparse
import sys

from agent.cli import EXIT_OK, EXIT_USAGE, add_config_argument

HELP = "set one string key of the configuration file to the text on stdin, verbatim"
VALUE_LIMIT = 64 * 1024  # characters read from stdin: a URL or a path, never more


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    setter = actions.add_parser("set", help=HELP, description=HELP)
    setter.add_argument("key", metavar="SECTION.KEY", help="e.g. onlinesim.base_url")
    add_config_argument(setter, "to change")


def run(args: argparse.Namespace) -> int:
    from agent import config
    from agent.errors import ConfigError

    raw = sys.stdin.read(VALUE_LIMIT + 1)
    value = raw[:-1] if raw.endswith("\n") else raw
    try:
        if len(raw) > VALUE_LIMIT:
            raise ConfigError(args.config, args.key, f"value longer than {VALUE_LIMIT} characters")
        if "\n" in value or "\r" in value:
            raise ConfigError(args.config, args.key, "the value holds a line break")
        config.set_string(args.config, args.key, value)
    except ConfigError as exc:
        print(f"simedge: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK
