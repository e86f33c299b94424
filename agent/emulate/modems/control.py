"""The modem hub's control protocol: JSON lines over the unix socket ``DIR/control.sock``.

One request per line, one answer per line, in order, on a connection that may carry many.
Every answer has ``"ok"``; a failed request answers ``{"ok": false, "error": "<why>"}``.

Requests (``op`` and its fields):

``{"op": "ping"}``
    -> ``{"ok": true, "modems": <count>}``
``{"op": "list"}``
    -> ``{"ok": true, "modems": [<state>, ...]}``, a state per modem: index, slot, ports,
    plugged, profile, imei, iccid, imsi, number, number_on_sim, operator, mcc_mnc,
    ussd_code, stored ({"SM": n, "ME": n}), in_network, cnmi, csms, registration, faults.
``{"op": "describe"}``
    -> ``{"ok": true, "hub": <the content of hub.json>}``
``{"op": "inject", "modem": K, "sender": S, "text": T, ...}``
    K is the modem's index, slot (USB path, e.g. "1-1.1.2") or a port symlink. Optional:
    ``shuffle_parts`` (bool), ``drop_part`` / ``duplicate_part`` (1-based part number),
    ``message_class`` (0..3), ``tz_quarters`` (SCTS zone in quarter hours), ``ref16``
    (16-bit concatenation reference), ``count`` and ``rate`` (messages per second).
    -> ``{"ok": true, "ids": ["sms-000001", ...]}``, one id per message.
``{"op": "inject_many", "messages": [{"modem": K, "sender": S, "text": T, ...}, ...]}``
    Up to 1,024 injections (each with ``inject``'s fields and options) at one moment: all
    are checked first (one bad entry refuses the batch, naming ``messages[i]``), then
    handed to their modems in one go (about 17 µs each, so 64 within about a millisecond)
    instead of one control round trip apart, and no modem prints its ``+CMTI`` before
    the last is handed over.
    -> ``{"ok": true, "ids": [["sms-000001"], ["sms-000002"], ...]}``, a list per entry.
``{"op": "fault", "modem": K, "kind": KIND}`` (+ ``"seconds"`` for slow)
    KIND: hang, slow, garbage, clear, reboot, unplug, replug, sim-out, sim-in,
    storage-full, deregister, reregister. -> ``{"ok": true}``
``{"op": "call", "modem": K, "caller": "+4479...", "give_up_after": 30}``
    Ring modem K with caller ID (RING and, under AT+CLIP=1, +CLIP every few seconds)
    until the modem rejects it (ATH / AT+CHUP) or the caller gives up (then NO CARRIER).
    -> ``{"ok": true, "call": "call-000001"}``
``{"op": "sim", "modem": K, "credit": false, "service": true, "refusal": 38}``
    What the SIM's network allows, each field optional: ``credit`` (false: every SMS sent
    fails with +CMS ERROR 21), ``service`` (false: deregistered, sends fail with 331),
    ``refusal`` (a +CMS ERROR code every send fails with; null clears it). -> ``{"ok": true}``
``{"op": "events", "since": N}``
    -> ``{"ok": true, "events": [...], "next": M}``: the delivery log from sequence N on.
    Each event: seq, t (``time.monotonic()`` of the hub process), kind (injected, queued,
    stored, cmt, acked, unacked, storage-full), modem, sms_id, part, and for stored the
    memory and index. Latency benchmarks subtract the injected event's ``t``. An SMS a
    modem sent is ``submitted`` (recipient, reference, to_modem: the hub's modem it goes
    to, or null); a call is ``call-ringing``, ``call-rejected``, ``call-given up`` or
    ``call-lost`` (call_id, caller, rings).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import ControlError, EmulatorError

if TYPE_CHECKING:
    from agent.emulate.modems.hub import Hub

INJECT_OPTIONS = (
    "shuffle_parts",
    "drop_part",
    "duplicate_part",
    "message_class",
    "tz_quarters",
    "ref16",
    "count",
    "rate",
)
LINE_LIMIT = 1 << 20


class ControlServer:
    """Serves the control protocol for one hub."""

    def __init__(self, hub: Hub, path: Path) -> None:
        self.hub = hub
        self.path = path
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        try:
            self._server = await asyncio.start_unix_server(self._serve, self.path, limit=LINE_LIMIT)
        except OSError as exc:  # e.g. a path longer than AF_UNIX's 107 bytes
            raise EmulatorError(f"cannot listen: {exc}", "control socket", str(self.path)) from exc

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._connections):
                writer.close()
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while line := await reader.readline():
                answer = self.handle(line)
                writer.write(json.dumps(answer, ensure_ascii=False).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass  # the client went away or sent an over-long line: drop the connection
        finally:
            self._connections.discard(writer)
            writer.close()

    def handle(self, line: bytes) -> dict[str, Any]:
        """One request line -> its answer; never raises for bad input."""
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("a request is a JSON object")
            return {"ok": True, **self._dispatch(request)}
        except (EmulatorError, ValueError, KeyError, TypeError) as exc:
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    def _dispatch(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        hub = self.hub
        if op == "ping":
            return {"modems": len(hub.slots)}
        if op == "list":
            return {"modems": hub.describe()}
        if op == "describe":
            return {"hub": hub.description()}
        if op == "inject":
            options = {key: request[key] for key in INJECT_OPTIONS if request.get(key) is not None}
            ids = hub.inject(
                request["modem"], str(request["sender"]), str(request["text"]), **options
            )
            return {"ids": ids}
        if op == "inject_many":
            return {"ids": hub.inject_many(request["messages"])}
        if op == "fault":
            hub.fault(request["modem"], str(request["kind"]), seconds=request.get("seconds"))
            return {}
        if op == "call":
            call_id = hub.call(
                request["modem"],
                str(request["caller"]),
                give_up_after=float(request.get("give_up_after", 30.0)),
            )
            return {"call": call_id}
        if op == "sim":
            refusal = request.get("refusal")
            hub.set_sim(
                request["modem"],
                credit=_flag(request, "credit"),
                service=_flag(request, "service"),
                refusal=int(refusal) if refusal is not None else None,
                clear_refusal="refusal" in request and refusal is None,
            )
            return {}
        if op == "events":
            since = int(request.get("since", 0))
            events = hub.events_since(since)
            return {"events": events, "next": events[-1]["seq"] + 1 if events else since}
        raise ValueError(f"unknown op {op!r}")


def _flag(request: dict[str, Any], name: str) -> bool | None:
    value = request.get(name)
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"{name}: expected true or false, got {value!r}")
    return value


class ControlClient:
    """Talks to a running hub; usable in-process from tests (``async with``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def connect(self) -> None:
        try:
            self._reader, self._writer = await asyncio.open_unix_connection(
                self.path, limit=LINE_LIMIT
            )
        except OSError as exc:
            raise ControlError(f"{self.path}: cannot reach the modem hub: {exc}") from exc

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
            self._writer = self._reader = None

    async def __aenter__(self) -> ControlClient:
        await self.connect()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request; its answer, or ControlError with the hub's reason."""
        async with self._lock:
            # Connecting inside the lock: concurrent first requests share one connection
            # instead of each opening its own and replacing the others' streams.
            if self._writer is None or self._reader is None:
                await self.connect()
            assert self._writer is not None
            assert self._reader is not None
            try:
                self._writer.write(json.dumps({"op": op, **fields}).encode() + b"\n")
                await self._writer.drain()
                line = await self._reader.readline()
            except OSError as exc:
                raise ControlError(f"{self.path}: connection to the hub failed: {exc}") from exc
        if not line:
            raise ControlError(f"{self.path}: the hub closed the connection")
        answer = json.loads(line)
        if not answer.get("ok"):
            raise ControlError(f"{op}: {answer.get('error', 'refused')}")
        return answer

    async def inject(self, modem: int | str, sender: str, text: str, **options: Any) -> list[str]:
        answer = await self.request("inject", modem=modem, sender=sender, text=text, **options)
        return list(answer["ids"])

    async def inject_many(self, messages: list[dict[str, Any]]) -> list[list[str]]:
        """A burst: ``messages`` (each ``modem``, ``sender``, ``text`` and any option of
        :meth:`inject`) handed over at one moment; the ids, a list per message."""
        answer = await self.request("inject_many", messages=messages)
        return [list(ids) for ids in answer["ids"]]

    async def fault(self, modem: int | str, kind: str, *, seconds: float | None = None) -> None:
        await self.request("fault", modem=modem, kind=kind, seconds=seconds)

    async def call(self, modem: int | str, caller: str, *, give_up_after: float = 30.0) -> str:
        answer = await self.request("call", modem=modem, caller=caller, give_up_after=give_up_after)
        return str(answer["call"])

    async def set_sim(self, modem: int | str, **fields: Any) -> None:
        await self.request("sim", modem=modem, **fields)

    async def list(self) -> list[dict[str, Any]]:
        return list((await self.request("list"))["modems"])

    async def events(self, since: int = 0) -> tuple[list[dict[str, Any]], int]:
        answer = await self.request("events", since=since)
        return list(answer["events"]), int(answer["next"])
