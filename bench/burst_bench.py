"""Bursts: one SMS at once on each of 8, then 64 modems; simedge beside python-gsmmodem-new.

Issue 19's burst goal: with one SMS arriving at the same moment on every modem of a hub,
simedge's median and p99 from the SMS's arrival to "stored" are at most
python-gsmmodem-new's, and its p99 is under 50 ms. The slowest SMS of a burst is the
one that waited behind the others, so that is what p99 and max read.

- The modems: each receiver reads its own hub of emulated SIM800 modems, both hubs of
  the same seed, so both read the same SIMs; each burst is injected in ONE control request
  (``inject_many``): its SMS land within about a millisecond for 64 (the "injection
  spread" row; more when the machine is busy), not a round trip apart, and no modem
  prints its ``+CMTI`` before the last SMS is handed over.
- Latency per SMS: the hub's ``injected`` stamp to "stored": for simedge the stand-in's
  receipt of addMessage (so the SQLite commit before ``AT+CMGD`` and the HTTP upload are
  in it, which the peer does neither of), for python-gsmmodem-new its callback
  (``bench/peers/gsmmodem_runner.py``). Both stamps are ``time.monotonic()``, one clock
  for every process of the machine.
- Both receivers are started once per hub size, each on its hub, and warmed up (one
  burst, all stored, then ``SETTLE`` s for start-up work to end). Then blocks alternate,
  simedge first: simedge, peer, simedge, peer, simedge, peer; a block is ``BURSTS``
  bursts, each sent once the previous one is all stored plus ``REST`` s. Why not a fresh
  start per block: python-gsmmodem-new takes about 35 s to open 64 ports (its autobaud
  wait, one port after the other), which made the run 7 minutes; an idle receiver costs
  about 1 % of a core (bench/RESULTS.md, peers_bench), and alternating still spreads a
  noisy neighbour's minutes over both.

A Pi-sized run (issue 19) calls :func:`measure` or :func:`run` with ``on_agent_started``:
it gets the agent's PID right after the process is started, e.g. to put it into a
CPU-limited cgroup; ``label`` then names the condition in every row.

    python -m bench.burst_bench [MODEMS ...]     # default 8 64; rows printed
    python -m bench burst_bench                  # the same as bench/RESULTS.md's table

Settings: ``SIMEDGE_BENCH_BURST_BLOCKS`` (blocks per receiver, default 3) and
``SIMEDGE_BENCH_BURSTS`` (bursts per block, default 10). The whole run took 3 min 10 s
on the 2-core VM (python-gsmmodem-new alone takes 35 s to open 64 ports).
:mod:`bench.burst_anatomy` says where simedge's time goes in these bursts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from agent.emulate.modems.control import ControlClient
from bench import Result
from bench.peers import Peer
from bench.peers.pygsmmodem import GsmModemLibrary
from bench.peers_bench import Simedge
from bench.site import Process, at_ports, inject_burst, percentiles, start_hub

MODEM_COUNTS = (8, 64)
SEED = 23
BLOCKS = 3
BURSTS = 10
REST = 0.5  # seconds after a burst is all stored before the next
SETTLE = 1.0  # seconds after the warm-up burst: the receiver's start-up work ends
WARM_UP_WITHIN = 120.0  # seconds for the warm-up burst to be stored (modems still opening)
BURST_WITHIN = 30.0  # seconds for one burst to be stored; later SMS count as lost
POLL = 0.02  # seconds between looks at what a receiver stored (not part of any latency)
P99_GOAL_MS = 50.0
COMMAND = "python -m bench.burst_bench"


@dataclass
class Burst:
    """One burst, by SMS text: when each was injected, on the SIM (its ``+CMTI`` printed)
    and stored by the receiver."""

    injected: dict[str, float]
    on_sim: dict[str, float]
    stored: dict[str, float]

    @property
    def latencies_ms(self) -> list[float]:
        return [
            (self.stored[text] - at) * 1000
            for text, at in self.injected.items()
            if text in self.stored
        ]

    @property
    def spread_us(self) -> float:
        """Microseconds between the first and the last injection of the burst."""
        return (max(self.injected.values()) - min(self.injected.values())) * 1e6


@dataclass
class Block:
    receiver: str
    bursts: list[Burst] = field(default_factory=list)

    @property
    def latencies_ms(self) -> list[float]:
        return [value for burst in self.bursts for value in burst.latencies_ms]


async def _stored(receiver: Peer, texts: list[str], seconds: float) -> dict[str, float]:
    """What ``receiver`` stored of ``texts`` once all are or ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    while True:
        receipts = await receiver.receipts()
        if all(text in receipts for text in texts) or time.monotonic() > deadline:
            return {text: receipts[text] for text in texts if text in receipts}
        await asyncio.sleep(POLL)


@dataclass
class Side:
    """A receiver reading its own hub, warmed up: bursts can be sent."""

    receiver: Peer
    modems: int
    hub: Process
    control: ControlClient
    cursor: int  # the hub's event log cursor (see bench.site.Injection)
    bursts_sent: int = 0

    async def block(self, bursts: int) -> Block:
        """``bursts`` bursts, each once the previous one is stored and ``REST`` s later."""
        measured = Block(self.receiver.name)
        for _ in range(bursts):
            tag = f"burst{self.bursts_sent:04d}"
            self.bursts_sent += 1
            injection = await inject_burst(self.control, self.modems, tag, self.cursor)
            injected = injection.by_text()
            stored = await _stored(self.receiver, list(injected), BURST_WITHIN)
            await injection.collect(self.control)  # the on-SIM stamps, after the timing
            self.cursor = injection.next_event
            measured.bursts.append(Burst(injected, injection.by_text(injection.on_sim_at), stored))
            await asyncio.sleep(REST)
        return measured


@contextlib.asynccontextmanager
async def side(receiver: Peer, modems: int, folder: Path) -> AsyncIterator[Side]:
    """A hub of ``modems`` SIM800 modems (always seed ``SEED``) in ``folder`` with
    ``receiver`` reading it, once every modem has been read once (the warm-up burst) and
    the receiver's start-up work has had ``SETTLE`` s to end; both stopped on leaving."""
    began = time.monotonic()
    hub, control = await start_hub(folder, modems, SEED)
    try:
        await receiver.start(folder, await at_ports(control))
        try:
            warm = await inject_burst(control, modems, "warm", 0)
            texts = list(warm.texts.values())
            if len(await _stored(receiver, texts, WARM_UP_WITHIN)) < len(texts):
                raise RuntimeError(f"{receiver.name}: the warm-up burst was not all stored")
            await asyncio.sleep(SETTLE)
            print(
                f"burst_bench: {receiver.name} reads {modems} modems, "
                f"{time.monotonic() - began:.1f} s after its start",
                file=sys.stderr,
                flush=True,
            )
            yield Side(receiver, modems, hub, control, warm.next_event)
        finally:
            await receiver.stop()
    finally:
        await control.close()
        await hub.stop()


@dataclass
class Measured:
    """Every block of one hub size, in the order run."""

    modems: int
    blocks: list[Block]

    def of(self, receiver: str) -> list[Block]:
        return [each for each in self.blocks if each.receiver == receiver]


async def _alternate(
    modems: int, blocks: int, bursts: int, on_agent_started: Callable[[int], None] | None
) -> Measured:
    receivers: list[Peer] = [Simedge(on_agent_started=on_agent_started), GsmModemLibrary()]
    done: list[Block] = []
    with tempfile.TemporaryDirectory(prefix="simedge-burst-") as directory:
        async with contextlib.AsyncExitStack() as stack:
            folders = [Path(directory) / receiver.name for receiver in receivers]
            for folder in folders:
                folder.mkdir()
            sides = [
                await stack.enter_async_context(side(receiver, modems, folder))
                for receiver, folder in zip(receivers, folders, strict=True)
            ]
            for _ in range(blocks):
                for each in sides:
                    done.append(await each.block(bursts))
    return Measured(modems, done)


def measure(
    modems: int,
    *,
    blocks: int = BLOCKS,
    bursts: int = BURSTS,
    on_agent_started: Callable[[int], None] | None = None,
) -> Measured:
    """simedge and python-gsmmodem-new in ``blocks`` alternating blocks each on ``modems``
    modems. ``on_agent_started(pid)``: see the module docstring. Raises RuntimeError when
    the peer is not installed or a receiver fails to read the warm-up burst."""
    if (reason := GsmModemLibrary().missing()) is not None:
        raise RuntimeError(reason)
    return asyncio.run(_alternate(modems, blocks, bursts, on_agent_started))


def _summary(blocks: list[Block]) -> tuple[float, float, float, int]:
    values = [value for each in blocks for value in each.latencies_ms]
    return (*percentiles(values), len(values))


def rows(measured: Measured, *, label: str = "") -> list[Result]:
    """Rows for bench/RESULTS.md: per receiver median, p99, max and samples, the peer's
    with its ratio to simedge's; notes say the blocks and the goal."""
    modems = measured.modems
    where = f"{modems} modems" + (f", {label}" if label else "")
    simedge = measured.of(Simedge.name)
    peer = measured.of(GsmModemLibrary.name)
    bursts = len(simedge[0].bursts) if simedge else 0
    design = (
        f"{len(simedge)} blocks per receiver alternating (simedge first), each "
        f"{bursts} bursts of one SMS on each of {modems} SIM800 modems at once; "
        'goal (issue 19): "median and p99 <= python-gsmmodem-new\'s, p99 < 50 ms"'
    )
    reference = _summary(simedge)
    results: list[Result] = []
    for blocks in (simedge, peer):
        name = blocks[0].receiver
        figures = _summary(blocks)
        expected = len(blocks) * bursts * modems
        per_block = ", ".join(
            f"{percentiles(each.latencies_ms)[1]:.1f}" for each in blocks if each.latencies_ms
        )
        for label_, value, base in zip(
            ("median", "p99", "max"), figures[:3], reference[:3], strict=True
        ):
            ratio = f"×{value / base:.2f} simedge's; " if blocks is peer and base > 0 else ""
            note = ratio + (
                f"p99 per block {per_block} ms; {design}" if label_ == "p99" else design
            )
            if blocks is simedge and label_ == "p99":
                met = "met" if value < P99_GOAL_MS else "NOT met"
                note = f"p99 < {P99_GOAL_MS:g} ms {met}; " + note
            results.append(
                Result(
                    f"{name}: burst on {where}, injected -> stored, {label_}",
                    value,
                    "ms",
                    COMMAND,
                    note,
                )
            )
        results.append(
            Result(
                f"{name}: burst on {where}, samples",
                float(figures[3]),
                "SMS",
                COMMAND,
                f"{figures[3]} of {expected} injected were stored within {BURST_WITHIN:g} s",
            )
        )
    spreads = [burst.spread_us for each in measured.blocks for burst in each.bursts]
    for label_, value in (("median", statistics.median(spreads)), ("max", max(spreads))):
        results.append(
            Result(
                f"burst on {where}: injection spread, {label_}",
                value,
                "µs",
                COMMAND,
                f"first to last injected stamp of one burst (the hub's inject_many), "
                f"{len(spreads)} bursts",
            )
        )
    return results


def run(
    *,
    modem_counts: tuple[int, ...] = MODEM_COUNTS,
    on_agent_started: Callable[[int], None] | None = None,
    label: str = "",
) -> list[Result]:
    """Rows for every hub size in ``modem_counts``; see :func:`measure` and :func:`rows`."""
    blocks = int(os.environ.get("SIMEDGE_BENCH_BURST_BLOCKS", BLOCKS))
    bursts = int(os.environ.get("SIMEDGE_BENCH_BURSTS", BURSTS))
    results: list[Result] = []
    for modems in modem_counts:
        try:
            measured = measure(
                modems, blocks=blocks, bursts=bursts, on_agent_started=on_agent_started
            )
        except RuntimeError as exc:  # first line only: a table cell
            reason = f"failed: {str(exc).splitlines()[0]}"
            results.append(Result(f"burst on {modems} modems: skipped", "-", "", COMMAND, reason))
            continue
        results.extend(rows(measured, label=label))
    return results


if __name__ == "__main__":
    counts = tuple(int(argument) for argument in sys.argv[1:]) or MODEM_COUNTS
    for result in run(modem_counts=counts):
        print(f"{result.name}: {result.cell()} {result.unit} ({result.note})")
