"""A site of real processes for the end-to-end, idle and peer benchmarks.

Each part runs as its own process, as on a Pi, so that its CPU and memory can be read
from ``/proc`` apart from the others and from the bench's own loop:

- the emulated modems: ``simedge emulate modems --count N --profile sim800``;
- the OnlineSim stand-in: ``simedge emulate onlinesim``;
- the agent: ``simedge run --config FILE``, configured as an operator would (defaults but
  for the stand-in's URL, the hub's folder and a loopback webhook).

Times: the hub stamps the ``injected`` event of each SMS with ``time.monotonic()``, the
stand-in stamps each addMessage with ``time.monotonic()``, and peers are stamped by the
bench with ``time.monotonic()`` when their output appears. Linux's CLOCK_MONOTONIC is one
clock for every process of the machine, so the differences are latencies.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from agent.emulate.modems.control import ControlClient

# the console script next to the running interpreter: the venv's `simedge`
SIMEDGE = [str(Path(sys.executable).with_name("simedge"))]
KEY = "bench-api-key-0123456789"
TOKEN = "bench-webhook-token-0123456789"
SENDER = "+79161234567"
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ /proc figures


def _children_of() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    return children


def process_tree(pid: int) -> list[int]:
    """``pid`` and every live descendant: smstools forks a process per modem."""
    children = _children_of()
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid``'s process tree (reaped children included)."""
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(value) for value in fields[11:15])
    return total / CLOCK_TICK


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid``'s process tree (VmRSS summed), MiB."""
    kib = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    kib += int(line.split()[1])
    return kib / 1024


# ------------------------------------------------------------------ processes


@dataclass
class Process:
    """A child process of the bench, its output kept in a log file for post-mortems."""

    name: str
    process: asyncio.subprocess.Process
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    async def start(
        cls,
        name: str,
        argv: list[str],
        log: Path,
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Process:
        """``env``: the whole environment of the process (None: the bench's own)."""
        handle = log.open("ab")
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdout=handle,
            stderr=asyncio.subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
        handle.close()
        return cls(name, process, log)

    async def wait_for_line(self, prefix: str, seconds: float = 60.0) -> str:
        """The first line of output starting with ``prefix``; raises if the process dies."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for line in self.log.read_text(errors="replace").splitlines():
                if line.startswith(prefix):
                    return line
            if self.process.returncode is not None:
                break
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.name} did not print {prefix!r}; see {self.log}:\n{self.tail()}")

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    async def stop(self, seconds: float = 30.0) -> None:
        """SIGTERM to the process group (smsd's children too), SIGKILL if it lingers."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(seconds):
                    await self.process.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                await self.process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def start_hub(folder: Path, count: int, seed: int) -> tuple[Process, ControlClient]:
    """``count`` SIM800 modems (one AT port each, no noise) in ``folder/modems``."""
    hub = await Process.start(
        "modem hub",
        [
            *SIMEDGE,
            "emulate",
            "modems",
            "--count",
            str(count),
            "--dir",
            str(folder / "modems"),
            "--profile",
            "sim800",
            "--seed",
            str(seed),
            "--noise-interval",
            "0",
        ],
        folder / "hub.log",
    )
    await hub.wait_for_line("modem hub ready")
    client = ControlClient(folder / "modems" / "control.sock")
    await client.connect()
    return hub, client


async def at_ports(client: ControlClient) -> list[str]:
    """Each modem's AT port symlink, by modem index (SIM800: its only port)."""
    return [str(modem["ports"][0]) for modem in await client.list()]


@dataclass
class StandIn:
    process: Process
    url: str
    control_url: str
    http: httpx.AsyncClient = field(default_factory=lambda: httpx.AsyncClient(timeout=30))
    received: dict[str, float] = field(default_factory=dict)
    _last_message: int = 0

    async def get(self, what: str, since: int = 0) -> Any:
        answer = await self.http.get(f"{self.control_url}/_standin/{what}", params={"since": since})
        answer.raise_for_status()
        return answer.json()

    async def collect(self) -> dict[str, float]:
        """Every addMessage received so far: text -> the stand-in's monotonic receipt time."""
        answer = await self.get("messages", self._last_message)  # since is exclusive
        for message in answer["messages"]:
            self.received[message["text"]] = message["received_monotonic"]
            self._last_message = max(self._last_message, message["seq"])
        return self.received

    async def online_count(self) -> int:
        return len((await self.get("online"))["numbers"])

    async def stop(self) -> None:
        await self.http.aclose()
        await self.process.stop()


async def start_standin(folder: Path) -> StandIn:
    process = await Process.start(
        "stand-in",
        [*SIMEDGE, "emulate", "onlinesim", "--listen", "127.0.0.1:0", "--key", KEY],
        folder / "standin.log",
    )
    line = await process.wait_for_line("onlinesim stand-in ready")
    words = dict(word.split("=", 1) for word in line.split() if "=" in word)
    return StandIn(process, words["url"], words["control"])


async def start_agent(
    folder: Path,
    standin: StandIn,
    *,
    log_level: str = "WARNING",
    env: dict[str, str] | None = None,
) -> Process:
    """``simedge run`` with a configuration file as an operator writes it (``log_level``:
    TRACE logs every AT line with its time, for a post-mortem of one SMS; ``env``: the
    agent's whole environment, None for the bench's)."""
    config = folder / "simedge.toml"
    config.write_text(
        f'[onlinesim]\nbase_url = "{standin.url}/api/resellers"\napi_key = "{KEY}"\n'
        f'[site]\ndata_dir = "{folder / "data"}"\n'
        f'[modems]\nports = ["{folder / "modems"}/*"]\n'
        f'[webhook]\nlisten = "127.0.0.1:{free_port()}"\ntoken = "{TOKEN}"\n'
        f'[control]\nsocket = "{folder / "agent.sock"}"\n'
        f'[logging]\nlevel = "{log_level}"\n'
    )
    return await Process.start(
        "agent", [*SIMEDGE, "run", "--config", str(config)], folder / "agent.log", env=env
    )


async def until(condition: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    """Poll an async ``condition`` every 100 ms (other processes give no events)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"timed out after {seconds:g} s waiting for {what}")


# ------------------------------------------------------------------ injection


@dataclass
class Injection:
    """What was injected: SMS id -> text, and each id's ``injected`` time in the hub.

    ``next_event`` is the hub's event log cursor: pass it to the next injection so that
    the log is read once (all of it would not fit one answer after a long run).
    """

    next_event: int
    texts: dict[str, str] = field(default_factory=dict)
    injected_at: dict[str, float] = field(default_factory=dict)
    on_sim_at: dict[str, float] = field(default_factory=dict)  # "stored": on the SIM, +CMTI out

    async def collect(self, client: ControlClient) -> None:
        events, self.next_event = await client.events(self.next_event)
        for event in events:
            if event.get("sms_id") not in self.texts:
                continue
            if event["kind"] == "injected":
                self.injected_at[event["sms_id"]] = event["t"]
            elif event["kind"] == "stored":
                self.on_sim_at[event["sms_id"]] = event["t"]

    def by_text(self, stamps: dict[str, float] | None = None) -> dict[str, float]:
        """text -> its injected stamp (or its stamp in ``stamps``, e.g. ``on_sim_at``)."""
        chosen = self.injected_at if stamps is None else stamps
        return {text: chosen[sms_id] for sms_id, text in self.texts.items() if sms_id in chosen}


async def inject_steadily(
    client: ControlClient, modems: int, rate: float, seconds: float, tag: str, next_event: int
) -> Injection:
    """``rate`` SMS per second spread round-robin over ``modems`` for ``seconds``.

    The schedule is fixed in advance (message ``i`` at ``start + i / rate`` to modem
    ``i % modems``) so that every peer gets the same stream; a late bench catches up
    rather than lowering the rate. Texts are unique (``tag`` and the number) so each
    receiver's output is matched to its injection. ``next_event``: the previous
    injection's cursor, or 0 on a fresh hub.
    """
    injection = Injection(next_event)
    await injection.collect(client)  # events of earlier work: none of ours
    total = round(rate * seconds)
    started = last_collect = time.monotonic()
    for number in range(total):
        delay = started + number / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        text = f"{tag} {number:06d} code 4711"
        (sms_id,) = await client.inject(number % modems, SENDER, text)
        injection.texts[sms_id] = text
        if time.monotonic() - last_collect > 1.0:
            await injection.collect(client)
            last_collect = time.monotonic()
    await injection.collect(client)
    return injection


async def inject_burst(client: ControlClient, modems: int, tag: str, next_event: int) -> Injection:
    """One SMS on each of modems ``0 .. modems - 1`` at one moment (the hub's
    ``inject_many``: no control round trip between two modems), texts ``tag`` and the
    modem's index. ``next_event``: as for :func:`inject_steadily`."""
    injection = Injection(next_event)
    await injection.collect(client)  # events of earlier work: none of ours
    texts = [f"{tag} {index:06d} code 4711" for index in range(modems)]
    ids = await client.inject_many(
        [{"modem": index, "sender": SENDER, "text": text} for index, text in enumerate(texts)]
    )
    for (sms_id,), text in zip(ids, texts, strict=True):
        injection.texts[sms_id] = text
    await injection.collect(client)
    return injection


# ------------------------------------------------------------------ figures


def percentiles(values_ms: list[float]) -> tuple[float, float, float]:
    """p50, p99 and max of a list of milliseconds."""
    if len(values_ms) < 2:
        only = values_ms[0] if values_ms else float("nan")
        return only, only, only
    cuts = statistics.quantiles(values_ms, n=100, method="inclusive")
    return statistics.median(values_ms), cuts[98], max(values_ms)


def latencies_ms(injected: dict[str, float], received: dict[str, float]) -> list[float]:
    """Injection -> receipt for every text received (both maps: text -> monotonic)."""
    return [(received[text] - at) * 1000 for text, at in injected.items() if text in received]


async def cpu_per_minute(pid: int, seconds: float) -> float:
    """CPU seconds per minute of wall time used by ``pid``'s tree over ``seconds``."""
    cpu, wall = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    return (cpu_seconds(pid) - cpu) / (time.monotonic() - wall) * 60


# ------------------------------------------------------------------ simedge's site


@dataclass
class SimedgeSite:
    """Hub, stand-in and agent running, every modem's number online at the stand-in."""

    hub: Process
    control: ControlClient
    standin: StandIn
    agent: Process
    next_event: int = 0  # the hub's event log cursor (see Injection)

    async def delivered(self, texts: list[str], seconds: float) -> None:
        """Wait up to ``seconds`` for the stand-in to receive every text."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            received = await self.standin.collect()
            if all(text in received for text in texts):
                return
            await asyncio.sleep(0.2)

    async def close(self) -> None:
        await self.agent.stop()
        await self.control.close()
        await self.standin.stop()
        await self.hub.stop()


@contextlib.asynccontextmanager
async def simedge_site(
    folder: Path,
    modems: int,
    seed: int,
    *,
    on_agent_started: Callable[[int], None] | None = None,
    agent_env: dict[str, str] | None = None,
) -> AsyncIterator[SimedgeSite]:
    """Start the three processes; yields a :class:`SimedgeSite` once all numbers are online.

    ``on_agent_started(pid)`` is called with the agent's PID as soon as its process exists,
    before it has opened a modem: the Pi-sized bench puts it into a CPU-limited cgroup
    there (the hub and the stand-in stay outside: they stand for hardware and OnlineSim).
    ``agent_env``: the agent's whole environment (None: the bench's own).
    """
    hub, control = await start_hub(folder, modems, seed)
    standin = await start_standin(folder)
    agent = await start_agent(folder, standin, env=agent_env)
    site = SimedgeSite(hub, control, standin, agent)
    try:
        if on_agent_started is not None:
            on_agent_started(agent.pid)

        async def all_online() -> bool:
            if agent.process.returncode is not None:
                raise RuntimeError(f"the agent exited; see {agent.log}:\n{agent.tail()}")
            return await standin.online_count() >= modems

        await until(all_online, 180, f"{modems} numbers online at the stand-in")
        yield site
    finally:
        await site.close()


async def simedge_load(
    site: SimedgeSite, modems: int, rate: float, seconds: float, tag: str
) -> tuple[list[float], float, int]:
    """Inject a steady stream; (latencies in ms, agent CPU s/min, SMS injected)."""
    cpu, wall = cpu_seconds(site.agent.pid), time.monotonic()
    injection = await inject_steadily(site.control, modems, rate, seconds, tag, site.next_event)
    site.next_event = injection.next_event
    texts = list(injection.texts.values())
    await site.delivered(texts, 30)
    used = cpu_seconds(site.agent.pid) - cpu
    per_minute = used / (time.monotonic() - wall) * 60
    return latencies_ms(injection.by_text(), site.standin.received), per_minute, len(texts)
