"""``simedge run``: the agent, from one configuration file."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from agent.cli import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    add_config_argument,
    run_on_event_loop,
    stop_on_signals,
)

if TYPE_CHECKING:
    from agent.config import Config

HELP = "run the agent on this site's modems (--check-config: only validate the file)"

# Threads of the agent's pool for blocking calls (asyncio.to_thread, run_in_executor): the
# store's heavier reads for control requests (at most 4 at once, MAX_WORKING in
# agent/control/server.py), hot-plug polls, port discovery and the uplink's DNS lookups
# (create_connection). asyncio's own default, min(32, cores + 4), is 6 threads on two
# cores and 8 on a Pi 4, and a thread once started stays: each kept its stack and its
# malloc arena, 0.3 MiB of resident memory apiece. docs/bounds.md, "The agent's memory".
IO_THREADS = 4
# glibc gives each thread that allocates an arena of its own, up to 8 per core, which keeps
# what the thread freed (a closed SQLite connection's schema and statements) for that
# thread alone. The writer thread and the pool above share one beside the main thread's;
# they rarely allocate at the same moment (the GIL), so they rarely wait on its lock.
MALLOC_ARENAS = 2
M_ARENA_MAX = -8  # glibc's <malloc.h>


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="validate the configuration, print a summary and exit",
    )


def run(args: argparse.Namespace) -> int:
    from agent import config as config_module
    from agent.errors import ConfigError
    from agent.uplink.client import environment_proxy

    try:
        config = config_module.load(args.config)
        environment_proxy(config.onlinesim.base_url)  # a malformed *_PROXY variable, too
    except ConfigError as exc:
        print(f"simedge: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.check_config:
        print(
            f"{config.source}: configuration is valid "
            f"(OnlineSim {config.onlinesim.base_url}, data in {config.site.data_dir}, "
            f"webhook on {config.webhook.host}:{config.webhook.port}{config.webhook.path})"
        )
        return EXIT_OK
    return serve(config)


def serve(config: Config) -> int:
    """Run the agent until SIGTERM or SIGINT; exit 0 after a clean shutdown, 1 when it
    cannot start (another agent holds the data folder, a port or the store fails)."""
    import os

    from agent import logs
    from agent.errors import AlreadyRunning, ListenError, StoreDamaged, StoreError
    from agent.store.datadir import AGENT_UMASK
    from agent.supervisor import Agent

    # Whatever started us (a shell's umask 022, cron): SMS are for our user and group only.
    os.umask(AGENT_UMASK)
    limit_malloc_arenas()  # before any thread starts
    logs.setup(config.log_level, secrets=config.secrets())

    async def main() -> None:
        use_io_threads(asyncio.get_running_loop())
        stop = stop_on_signals()
        await Agent(config).run(stop)

    try:
        run_on_event_loop(main())
    except StoreDamaged as exc:
        # Like a configuration error, restarting cannot fix it: exit 2, which the unit's
        # RestartPreventExitStatus keeps from a restart loop that would hide the message.
        print(f"simedge: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RuntimeError as exc:  # a part died of it while running (the prune met a bad page)
        if not isinstance(exc.__cause__, StoreDamaged):
            raise
        print(f"simedge: {exc.__cause__}", file=sys.stderr)
        return EXIT_USAGE
    except (AlreadyRunning, ListenError, StoreError) as exc:
        print(f"simedge: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def use_io_threads(loop: asyncio.AbstractEventLoop, threads: int = IO_THREADS) -> None:
    """Make ``loop``'s default executor a pool of ``threads`` threads (see IO_THREADS);
    the runner shuts it down as it would its own."""
    from concurrent.futures import ThreadPoolExecutor

    loop.set_default_executor(ThreadPoolExecutor(threads, thread_name_prefix="simedge-io"))


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas for the threads started after (see MALLOC_ARENAS); False
    where the C library is not glibc (musl has no such arenas) and nothing was changed."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except AttributeError:
        return False
    return bool(mallopt(M_ARENA_MAX, arenas))
