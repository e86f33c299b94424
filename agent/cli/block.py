"""``simedge block list|add|remove``: the rules that keep confidential SMS on site.

Through the running agent's control socket, so a rule applies to the next SMS and the
agent stays the only writer of its store. When the agent is down, the same operations
(:mod:`agent.control.block_rules`) run on the database directly, as ``simedge sim`` and
``simedge outbox`` do: a person fixing a mistaken rule at a stopped site should not have
to start the agent first, and the agent takes the change at its next start.

``add`` first tries the rule on the last stored SMS and prints what it would have
withheld; when that is most of them it asks (or needs ``--yes``) before adding it.
Rules from the configuration file are listed but removed only by editing the file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from agent.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, add_config_argument

if TYPE_CHECKING:
    from agent.control.protocol import Request
    from agent.status import BlockRuleStatus

HELP = "list, add or remove the rules that keep confidential SMS on site"

Send = Callable[["Request[Any]"], Awaitable[Any]]  # send(request) -> its result


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="block_command", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="the rules in force, and where each lives")
    add_config_argument(listing)
    add = sub.add_parser("add", help="keep SMS that match on site, never upload them")
    add.add_argument("name", help="the rule's name, shown with every SMS it withholds")
    add.add_argument("--sender", metavar="PATTERN", help="regular expression on the sender")
    add.add_argument("--text", metavar="PATTERN", help="regular expression on the text")
    add.add_argument(
        "--yes",
        action="store_true",
        help="add it even when it would have withheld most recent SMS",
    )
    add_config_argument(add)
    remove = sub.add_parser("remove", help="remove a rule added with add or the dashboard")
    remove.add_argument("name", help="the rule's name (simedge block list shows them)")
    add_config_argument(remove)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from agent import config as config_module
    from agent.errors import BlockRuleError, ConfigError, SimedgeError
    from agent.store.blocking import BlockRule

    name = f"simedge block {args.block_command}"
    try:
        config = config_module.load(args.config)
    except ConfigError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.block_command == "add":
        try:  # refused here, before the agent or the database is asked anything
            BlockRule(args.name, args.sender, args.text)
        except BlockRuleError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return EXIT_USAGE
    try:
        return asyncio.run(_run(args, config))
    except SimedgeError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_FAILURE


async def _run(args: argparse.Namespace, config: Any) -> int:
    from agent.control.block_rules import BlockRuleOps
    from agent.control.client import ControlClient
    from agent.control.protocol import handler_table
    from agent.errors import AgentNotRunning
    from agent.store import Store
    from agent.store.blocking import CONFIGURED, BlockRule

    try:
        async with ControlClient(config.control_socket) as client:
            return await _act(args, client.call)
    except AgentNotRunning as exc:
        print(f"{exc}: working on the database {config.database} instead")
    configured = [
        BlockRule(rule.name, rule.sender, rule.text, source=CONFIGURED)
        for rule in config.store.block
    ]
    store = await Store.open(config.database, block_rules=configured)
    try:
        handlers = handler_table(BlockRuleOps(store))

        async def send(request: Request[Any]) -> Any:
            return await handlers[request.OP](request)

        code = await _act(args, send)
    finally:
        await store.close()
    if code == EXIT_OK and args.block_command != "list":
        print("the agent takes the change when it starts")
    return code


async def _act(args: argparse.Namespace, send: Send) -> int:
    from agent.control.protocol import (
        AddBlockRule,
        ListBlockRules,
        PreviewBlockRule,
        RemoveBlockRule,
    )

    if args.block_command == "list":
        _print_rules(await send(ListBlockRules()))
        return EXIT_OK
    if args.block_command == "remove":
        print(await send(RemoveBlockRule(args.name)))
        return EXIT_OK
    trial = await send(PreviewBlockRule(args.name, args.sender, args.text))
    print(f"rule {args.name!r} {trial.summary}")
    force = False
    if trial.withholds_most:
        force = args.yes or _confirm("That is most of them. Add it anyway? [y/N] ")
        if not force:
            print(
                f"simedge block add: {args.name!r} not added (give --yes to add it anyway)",
                file=sys.stderr,
            )
            return EXIT_FAILURE
    print(await send(AddBlockRule(args.name, args.sender, args.text, force)))
    return EXIT_OK


def _confirm(question: str) -> bool:
    """A person's yes at a terminal; no terminal (a script, a pipe) means no."""
    if not sys.stdin.isatty():
        return False
    return input(question).strip().lower() in ("y", "yes")


def _print_rules(rules: tuple[BlockRuleStatus, ...]) -> None:
    from agent.status import RuleSource

    if not rules:
        print("no block rules: every SMS is forwarded")
        return
    for rule in rules:
        where = "configuration file" if rule.source is RuleSource.CONFIG else "added at run time"
        line = f"{rule.name}  sender {rule.sender or 'any'}  text {rule.text or 'any'}  ({where})"
        if rule.timing_out:
            line += "  ran out of time on an SMS: simplify it"
        print(line)
