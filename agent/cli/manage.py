"""Commands a person runs on site to steer the agent: ``simedge sim set-number`` and
``simedge outbox retry``.

Each goes through the running agent's control socket, so the agent acts at once (a set
number goes online, a retried message is sent) and stays the only writer of its store.
When the agent is not running, the change is written to the database directly and takes
effect at the next start.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from agent.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, add_config_argument

if TYPE_CHECKING:
    from agent.config import Config
    from agent.control.protocol import Request
    from agent.store import Store


def configure_sim(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="sim_command", metavar="ACTION", required=True)
    set_number = sub.add_parser("set-number", help="set a SIM's own number by hand")
    set_number.add_argument("iccid", help="the SIM's ICCID (simedge scan shows it)")
    set_number.add_argument("number", help="its number, international: +79161234567")
    add_config_argument(set_number)
    balance = sub.add_parser("balance", help="ask a SIM's balance by USSD now")
    balance.add_argument("sim", help="the SIM's slot or ICCID (simedge sims shows both)")
    add_config_argument(balance)


def configure_outbox(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="outbox_command", metavar="ACTION", required=True)
    retry = sub.add_parser("retry", help="send a dead letter (or all of them) again")
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("message_id", nargs="?", type=int, help="the message's number")
    which.add_argument("--all-dead", action="store_true", help="every dead letter")
    add_config_argument(retry)


def run_sim(args: argparse.Namespace) -> int:
    if args.sim_command == "balance":
        return _ask_balance(args)
    from agent.modem.own_number import international_number

    try:
        e164 = international_number(args.number.strip())
    except ValueError as exc:
        print(f"simedge sim set-number: {exc}", file=sys.stderr)
        return EXIT_USAGE

    async def offline(store: Store) -> str:
        await store.set_sim_number(args.iccid, e164)
        return f"number of {args.iccid} set to {e164} (the agent takes it at its next start)"

    from agent.control.protocol import SetNumber

    return _steer(args, "simedge sim set-number", SetNumber(args.iccid, e164), offline)


def _ask_balance(args: argparse.Namespace) -> int:
    # A USSD question needs the modem, which only the running agent holds: no offline way.
    from agent.control.protocol import AskBalance

    return _steer(args, "simedge sim balance", AskBalance(args.sim), None)


def run_outbox(args: argparse.Namespace) -> int:
    from agent.control.protocol import Retry

    request = Retry(all_dead=True) if args.all_dead else Retry(message_id=args.message_id)

    async def offline(store: Store) -> str:
        if args.all_dead:
            count = await store.retry_all_dead()
            return f"{count} dead letters queued again (sent when the agent starts)"
        await store.retry(args.message_id)
        return f"message {args.message_id} queued again (sent when the agent starts)"

    return _steer(args, "simedge outbox retry", request, offline)


def _steer(
    args: argparse.Namespace,
    name: str,
    request: Request[str],
    offline: Callable[[Store], Awaitable[str]] | None,
) -> int:
    """Ask the running agent; when it does not run, do ``offline`` on the database, or
    (None) say that it needs the agent."""
    from agent import config as config_module
    from agent.control.client import call
    from agent.errors import AgentNotRunning, ConfigError, ControlError, SimedgeError

    try:
        config = config_module.load(args.config)
    except ConfigError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        print(call(config.control_socket, request))
        return EXIT_OK
    except AgentNotRunning:
        if offline is None:
            print(f"{name}: the agent is not running; start it first", file=sys.stderr)
            return EXIT_FAILURE
        # then the database, directly
    except ControlError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        print(asyncio.run(with_store(config, offline)))
    except SimedgeError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


async def with_store(config: Config, work: Callable[[Store], Awaitable[str]]) -> str:
    """Run ``work`` on the configuration's store, opened for this command alone (the
    agent is not running), and return what it says."""
    from agent.locking import DataDirLock
    from agent.store import Store

    # No answer on the control socket, yet an agent may hold the folder (starting, or its
    # socket elsewhere): then it is the one writer, and this refuses with its PID. Held
    # until the store is closed, so that no agent starts on the file meanwhile.
    with DataDirLock.kept_from_agents(config.site.data_dir):
        store = await Store.open(config.database)
        try:
            return await work(store)
        finally:
            await store.close()
