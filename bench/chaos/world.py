"""The emulated site as three real processes, for chaos runs and the crash test.

    simedge emulate modems ──pty──▶ simedge run ──HTTP──▶ simedge emulate onlinesim
         ▲ control.sock (inject, fault)     ▲ SIGKILL, restart     ▲ /_standin (faults, messages)
         └────────────────────────── World ─┴──────────────────────┘

Nothing is mocked and nothing runs in the caller's event loop but the remote controls: the
agent is ``simedge run --config FILE`` with the configuration a site would have (only the
timings are short), so that killing it with SIGKILL is what a power cut does to it.

Every injected SMS carries a unique text (``chaos 000123 ...``), so that the verdict is a
count by text at the stand-in: what was injected and never arrived is lost, what arrived
more than once is a duplicate. Texts not from this world (the "Balance" SMS a storage-full
fault leaves on a SIM) are not counted.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from agent.control.client import ControlClient as AgentControl
from agent.emulate.modems import ControlClient as HubControl
from agent.errors import ControlError

KEY = "chaos-api-key-0123456789"
TOKEN = "chaos-webhook-token-0123456789"
TEXT_PREFIX = "chaos "
SIMEDGE = (sys.executable, "-m", "agent.cli")
WORDS = ("alpha", "bravo", "code", "login", "confirm", "your", "account", "token", "river")
WORDS += ("stone", "cloud", "green", "lamp", "window", "seven", "paper", "orbit", "signal")
SENDERS = ("+79161234567", "VKcom", "Telegram", "+447700900123", "900")
LOG_TAIL = 400  # agent log lines kept in memory for checks and failure reports


class WorldError(Exception):
    """A part of the emulated world did not start or did not answer: the run cannot say
    anything about the agent, so it is reported as such rather than as a verdict."""


@dataclass(frozen=True)
class Tally:
    """What the stand-in holds, counted against what was injected."""

    injected: int
    received: int
    lost: frozenset[str]
    duplicates: int

    @property
    def unique(self) -> int:
        return self.injected - len(self.lost)

    def figures(self) -> str:
        return (
            f"{self.injected} injected, {self.unique} delivered, {len(self.lost)} lost, "
            f"{self.duplicates} duplicates"
        )

    def missing(self, limit: int = 5) -> str:
        shown = sorted(self.lost)[:limit]
        more = f" and {len(self.lost) - limit} more" if len(self.lost) > limit else ""
        return ", ".join(repr(text[:30]) for text in shown) + more


def free_port() -> int:
    """A loopback port nobody listens on right now (the agent's webhook must be configured
    with a real port; port 0 is refused by the configuration check)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _ready_line(process: asyncio.subprocess.Process, prefix: str, seconds: float) -> str:
    """The line a world process prints once it listens; its output up to then on failure."""
    assert process.stdout is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(seconds):
            while line := (await process.stdout.readline()).decode(errors="replace"):
                if line.startswith(prefix):
                    return line.strip()
                seen.append(line.rstrip())
    except TimeoutError:
        pass
    raise WorldError(f"no {prefix!r} line within {seconds:.0f} s; output: {seen[-5:]}")


async def _drain(process: asyncio.subprocess.Process, path: Path) -> None:
    """Keep a world process's output (after its ready line) in a file: read, so that a
    full pipe never blocks it, and kept, for the post-mortem of a failed run."""
    assert process.stdout is not None
    with path.open("ab", buffering=0) as output:
        while chunk := await process.stdout.read(65536):
            output.write(chunk)


async def _terminate(process: asyncio.subprocess.Process, seconds: float = 15.0) -> None:
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(seconds):
            await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()


def _fields(line: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in line.split() if "=" in part)


class AgentProcess:
    """``simedge run`` as a child process that can be killed and started again.

    Its stderr (the log) is read line by line into a bounded tail and a file, and the
    "agent started" line sets :attr:`started`, so callers wait on the agent saying so."""

    def __init__(
        self, config_path: Path, log_path: Path, env: dict[str, str] | None = None
    ) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.env = env  # added to the agent's environment (libfaketime for clock jumps)
        self.process: asyncio.subprocess.Process | None = None
        self.started = asyncio.Event()
        self.tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL)
        self.lines = 0  # log lines read so far, all starts together
        self.starts = 0
        self.kills = 0
        self._reader: asyncio.Task[None] | None = None
        self._watchers: list[tuple[Callable[[str], bool], asyncio.Event]] = []

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        if self.alive:
            raise WorldError("the agent is already running")
        self.started = asyncio.Event()
        self.process = await asyncio.create_subprocess_exec(
            *SIMEDGE,
            "run",
            "--config",
            str(self.config_path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **self.env} if self.env else None,
        )
        self.starts += 1
        self._reader = asyncio.create_task(self._read_log(self.process))

    async def _read_log(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        with self.log_path.open("a", encoding="utf-8", buffering=1) as log_file:
            log_file.write(f"---- start {self.starts} (pid {process.pid})\n")
            while raw := await process.stderr.readline():
                line = raw.decode(errors="replace").rstrip()
                log_file.write(line + "\n")
                self.lines += 1
                self.tail.append(line)
                if "agent started" in line:
                    self.started.set()
                for matches, event in self._watchers:
                    if matches(line):
                        event.set()

    def rss_bytes(self) -> int:
        """The agent process's resident memory now (Linux: VmRSS of /proc/PID/status)."""
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text(encoding="ascii")
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise WorldError(f"no VmRSS for the agent (pid {self.process.pid})")

    async def wait_started(self, seconds: float = 30.0) -> None:
        """Until the agent logs "agent started"; WorldError if it exits or stays silent."""
        assert self.process is not None
        exited = asyncio.create_task(self.process.wait())
        said = asyncio.create_task(self.started.wait())
        try:
            done, _ = await asyncio.wait(
                {exited, said}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            exited.cancel()
            said.cancel()
        if said not in done:
            why = "exited" if exited in done else f"did not start within {seconds:.0f} s"
            raise WorldError(f"the agent {why}; log tail: {list(self.tail)[-5:]}")

    async def wait_log(
        self, matches: Callable[[str], bool], seconds: float, *, coming_only: bool = False
    ) -> bool:
        """Whether a log line (already seen, unless ``coming_only``, or coming) matches
        within ``seconds``."""
        if not coming_only and any(matches(line) for line in self.tail):
            return True
        event = asyncio.Event()
        watcher = (matches, event)
        self._watchers.append(watcher)
        try:
            async with asyncio.timeout(seconds):
                await event.wait()
            return True
        except TimeoutError:
            return False
        finally:
            self._watchers.remove(watcher)

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a power cut."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        await self.process.wait()
        if self._reader is not None:
            await self._reader
        self.kills += 1

    async def stop(self) -> None:
        if self.process is not None:
            await _terminate(self.process, 30.0)
        if self._reader is not None:
            await self._reader


class World:
    """Modem hub, stand-in and agent, in a folder; ``async with World(...) as world``.

    The agent is not started by entering: call :meth:`start_agent` (scenarios first set
    faults or a small data folder)."""

    def __init__(
        self,
        folder: Path,
        *,
        modems: int = 4,
        profile: str = "sim800",
        seed: int = 1,
        data_dir: Path | None = None,
        agent_env: dict[str, str] | None = None,
        webhook_calls: bool = False,
        ussd_delay: float | None = None,
    ) -> None:
        self.folder = folder
        self.ussd_delay = ussd_delay  # the network's time over a USSD question (hub default)
        self.webhook_calls = webhook_calls
        self.modem_count = modems
        self.profile = profile
        self.seed = seed
        self.rng = random.Random(seed)
        self.hub_dir = folder / "modems"
        self.data_dir = data_dir or folder / "data"
        self.control_socket = folder / "agent.sock"
        self.webhook_port = free_port()
        self.injected: dict[str, int] = {}
        self.injected_at: dict[str, float] = {}  # text -> wall time it was injected
        # text -> stand-in wall time of its first arrival (latency and order figures)
        self.arrived_at: dict[str, float] = {}
        self.arrival_order: list[str] = []  # texts in the stand-in's order, first copies
        self._received: collections.Counter[str] = collections.Counter()
        self._since = 0
        self._hub_process: asyncio.subprocess.Process | None = None
        self._standin_process: asyncio.subprocess.Process | None = None
        self._drains: list[asyncio.Task[None]] = []
        self.hub = HubControl(self.hub_dir / "control.sock")
        self.http = httpx.AsyncClient(timeout=10.0)
        self.standin_url = ""
        self.control_url = ""
        self.agent = AgentProcess(folder / "simedge.toml", folder / "agent.log", agent_env)

    async def __aenter__(self) -> World:
        try:
            await self._start_hub()
            await self._start_standin()
            self._write_config()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def _start_hub(self) -> None:
        self._hub_process = await asyncio.create_subprocess_exec(
            *SIMEDGE,
            "emulate",
            "modems",
            "--count",
            str(self.modem_count),
            "--dir",
            str(self.hub_dir),
            "--profile",
            self.profile,
            "--seed",
            str(self.seed),
            *(() if self.ussd_delay is None else ("--ussd-delay", str(self.ussd_delay))),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        await _ready_line(self._hub_process, "modem hub ready", 60.0)
        self._drains.append(asyncio.create_task(_drain(self._hub_process, self.folder / "hub.log")))
        # Connected now, once: ControlClient connects lazily outside its lock, so the first
        # requests of concurrent tasks would each open (and drop) a connection.
        await self.hub.connect()

    async def _start_standin(self) -> None:
        # With webhook_calls, the stand-in calls the agent's webhook as OnlineSim does, but
        # only when asked (call_webhook): the hour between calls never comes in a run.
        webhook = ("--webhook", self.webhook_url, "--webhook-interval", "3600")
        self._standin_process = await asyncio.create_subprocess_exec(
            *SIMEDGE,
            "emulate",
            "onlinesim",
            "--listen",
            "127.0.0.1:0",
            "--key",
            KEY,
            "--seed",
            str(self.seed),
            *(webhook if self.webhook_calls else ()),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        fields = _fields(await _ready_line(self._standin_process, "onlinesim stand-in ready", 30.0))
        self.standin_url, self.control_url = fields["url"], fields["control"]
        self._drains.append(
            asyncio.create_task(_drain(self._standin_process, self.folder / "standin.log"))
        )

    def _write_config(self) -> None:
        # Short timings so that a run takes seconds; everything else as on a site.
        self.agent.config_path.write_text(
            f"""
[onlinesim]
base_url = "{self.standin_url}/api/resellers"
api_key = "{KEY}"
takeoff_sum = 0
timeout = 5
numbers_debounce = 0.5

[site]
data_dir = "{self.data_dir}"

[modems]
ports = ["{self.hub_dir}/*"]
health_interval = 2
command_timeout = 1.5

[webhook]
listen = "127.0.0.1:{self.webhook_port}"
token = "{TOKEN}"

[control]
socket = "{self.control_socket}"
""",
            encoding="utf-8",
        )

    async def close(self) -> None:
        await self.agent.stop()
        await self.hub.close()
        await self.http.aclose()
        for process in (self._standin_process, self._hub_process):
            if process is not None:
                await _terminate(process)
        await asyncio.gather(*self._drains)

    # -- the agent -----------------------------------------------------------------------

    async def start_agent(self, seconds: float = 30.0) -> None:
        await self.agent.start()
        await self.agent.wait_started(seconds)

    async def start_ready(self) -> bool:
        """Start the agent; whether all the world's modems got ready in it."""
        await self.start_agent()
        return await self.until_ready(self.modem_count) >= self.modem_count

    async def until_snapshot(
        self, condition: Callable[[dict[str, Any]], bool], seconds: float
    ) -> dict[str, Any]:
        """Wait, on the agent's own event stream, until a snapshot satisfies ``condition``;
        the last snapshot is returned either way (callers judge it)."""
        snapshot: dict[str, Any] = {}
        with contextlib.suppress(TimeoutError):
            async with (
                asyncio.timeout(seconds),
                AgentControl(self.control_socket) as control,
                control.subscribe() as events,
            ):
                # Subscribed: from now on nothing is missed. A snapshot now, then after
                # each event.
                while True:
                    snapshot = await control.request("snapshot")
                    if condition(snapshot):
                        return snapshot
                    await anext(events)
        return snapshot

    async def until_ready(self, count: int, seconds: float = 60.0) -> int:
        """Until ``count`` modems are ready in the agent; how many were ready at the end."""
        snapshot = await self.until_snapshot(lambda s: ready_modems(s) >= count, seconds)
        return ready_modems(snapshot)

    # -- SMS in, SMS out -----------------------------------------------------------------

    def _text(self) -> str:
        number = len(self.injected)
        words = " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(2, 6)))
        text = f"{TEXT_PREFIX}{number:06d} {words}"
        if self.rng.random() < 0.1:  # a long one now and then: parts across a kill
            text += " " + " ".join(self.rng.choice(WORDS) for _ in range(40))
        return text

    async def inject(self, modem: int) -> str:
        """One SMS with a text never used before, delivered by the network to ``modem``."""
        text = self._text()
        self.injected[text] = modem
        self.injected_at[text] = time.time()
        try:
            await self.hub.inject(modem, self.rng.choice(SENDERS), text)
        except ControlError:
            del self.injected[text]  # never sent (no SIM in that modem): not owed
            raise
        return text

    async def inject_many(
        self, count: int, rate: float, modems: Callable[[], list[int]] | None = None
    ) -> None:
        """``count`` SMS at ``rate`` per second, each to a random modem of ``modems()``."""
        choose = modems or (lambda: list(range(self.modem_count)))
        for _ in range(count):
            await self.inject(self.rng.choice(choose()))
            await asyncio.sleep(1.0 / rate)

    async def refresh(self) -> Tally:
        """Fetch what the stand-in accepted since last time and count it."""
        answer = await self.http.get(
            f"{self.control_url}/_standin/messages", params={"since": self._since}
        )
        answer.raise_for_status()
        for message in answer.json()["messages"]:
            self._since = max(self._since, int(message["seq"]))
            text = message["text"]
            if text.startswith(TEXT_PREFIX):
                if text not in self._received:
                    self.arrived_at[text] = float(message["received_at"])
                    self.arrival_order.append(text)
                self._received[text] += 1
        return self.tally()

    def tally(self) -> Tally:
        return Tally(
            injected=len(self.injected),
            received=sum(self._received.values()),
            lost=frozenset(set(self.injected) - set(self._received)),
            duplicates=sum(count - 1 for count in self._received.values()),
        )

    async def until_delivered(self, seconds: float) -> Tally:
        """Until every injected SMS is at the stand-in, or ``seconds`` passed. The stand-in
        process offers no event stream, so this polls its control API (0.25 s)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        tally = await self.refresh()
        while tally.lost and loop.time() < deadline:
            await asyncio.sleep(0.25)
            tally = await self.refresh()
        return tally

    async def whereabouts(self, texts: frozenset[str]) -> str:
        """For a failure report: which modems the missing SMS went to, and what those
        modems hold now (stored SMS, new-SMS indication setting, faults)."""
        modems = sorted({self.injected[text] for text in texts})
        states = {m["index"]: m for m in await self.hub.list()}
        return "; ".join(
            f"modem {k} ({states[k]['profile']}): stored {states[k]['stored']}, "
            f"cnmi {states[k]['cnmi']}, faults {states[k]['faults'] or 'none'}"
            for k in modems
        )

    async def in_outbox(self, texts: frozenset[str]) -> str:
        """For a failure report: how many of the missing SMS the agent holds in its outbox
        (stored but not accepted by OnlineSim), and how many of those are overdue."""
        try:
            async with AgentControl(self.control_socket) as control:
                rows = await control.request("outbox")
        except ControlError as exc:
            return f"the agent's outbox cannot be read: {exc}"
        now = time.time()
        held = [row for row in rows if row["text"] in texts]
        overdue = sum(1 for row in held if (row["next_attempt_at"] or 0) < now)
        return (
            f"{len(held)} of them in the agent's outbox ({overdue} due but not sent), "
            f"{len(texts) - len(held)} not in it"
        )

    def order_broken(self) -> list[int]:
        """Modems whose SMS reached OnlineSim in another order than they were injected."""
        broken = []
        for modem in sorted(set(self.injected.values())):
            sent = [text for text in self.injected if self.injected[text] == modem]
            got = [text for text in self.arrival_order if self.injected.get(text) == modem]
            if got != [text for text in sent if text in self.arrived_at]:
                broken.append(modem)
        return broken

    async def add_message_calls(self) -> list[dict[str, Any]]:
        """Every addMessage request the stand-in's API saw (answered or not)."""
        answer = await self.http.get(f"{self.control_url}/_standin/requests")
        answer.raise_for_status()
        return [r for r in answer.json()["requests"] if r["path"].endswith("/addMessage")]

    async def agent_health(self) -> dict[str, Any] | None:
        """The running agent's health over the control socket (what /healthz says)."""
        try:
            async with AgentControl(self.control_socket) as control:
                health: dict[str, Any] = await control.request("health")
                return health
        except ControlError:
            return None

    @property
    def webhook_url(self) -> str:
        """The agent's webhook as OnlineSim calls it (the default path of the config)."""
        return f"http://127.0.0.1:{self.webhook_port}/onlinesim/numbers?token={TOKEN}"

    async def connect_webhook(
        self, source: str
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A raw connection to the agent's webhook from ``source``, an address of
        127.0.0.0/8 (Linux routes all of it to lo): another client than OnlineSim's."""
        return await asyncio.open_connection("127.0.0.1", self.webhook_port, local_addr=(source, 0))

    async def call_webhook(self) -> dict[str, Any]:
        """Have the stand-in call the agent's webhook now (needs ``webhook_calls``):
        ``{seq, at, duration, status, body, numbers, error}``."""
        answer = await self.http.post(f"{self.control_url}/_standin/webhook/call")
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    async def forwarded_in(self, modem: int, seconds: float = 10.0) -> float | None:
        """Inject one SMS into ``modem`` and return how long it took to reach the stand-in
        (its receipt time less the injection time), or ``None`` if not within ``seconds``."""
        injected_at = time.time()
        text = await self.inject(modem)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while loop.time() < deadline:
            answer = await self.http.get(
                f"{self.control_url}/_standin/messages", params={"since": self._since}
            )
            answer.raise_for_status()
            for message in answer.json()["messages"]:
                if message["text"] == text:
                    return float(message["received_at"]) - injected_at
            await asyncio.sleep(0.05)  # the stand-in has no event stream; receipt is timed
        return None

    async def standin_faults(self, **faults: Any) -> None:
        answer = await self.http.post(f"{self.control_url}/_standin/faults", json=faults)
        answer.raise_for_status()

    async def modem_states(self) -> list[dict[str, Any]]:
        return await self.hub.list()


def ready_modems(snapshot: dict[str, Any]) -> int:
    return sum(1 for modem in snapshot.get("modems", ()) if modem.get("state") == "ready")
