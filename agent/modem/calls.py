"""Incoming calls on one modem: recorded with their caller ID, then rejected.

A SIM in a reseller's hub is for SMS; a call that rings on unanswered keeps the line busy
and, on some networks, ends in voicemail the SIM pays for. SMS gateways reject calls, and
so does simedge (docs/sims.md):

- at set-up, ``AT+CLIP=1`` asks for the caller's number with each ring (``+CLIP``);
- the first ``+CLIP`` of a call records it (caller, time) and rejects it with the first
  command of its vendor profile's ``hangup_commands`` the modem takes (``AT+CHUP``,
  else ``ATH``);
- a call whose ``RING`` comes with no ``+CLIP`` (the modem refused ``AT+CLIP=1``, or a
  network that sends none) is recorded without a caller and rejected at its second ring,
  giving a ``+CLIP`` the time to follow the first;
- ``RING`` / ``+CLIP`` lines already queued when the call was rejected belong to it
  (``same_call_within``) and start nothing.

Bounded: the handler keeps one call's state; at most ``records_per_minute`` calls a
minute are written to the store per SIM (the rest are rejected and counted in the log),
so a SIM flooded with calls neither grows memory nor keeps the store busy; each rejection
is one AT command, handled by the worker between its SMS like any other inbox item.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from agent.errors import CommandFailed
from agent.logs import LogLimiter, get_logger
from agent.modem.session import AtSession
from agent.modem.vendors import VendorProfile
from agent.protocol.urc import CallEnded, CallerId, Ring, Urc

log = get_logger("modem.calls")

CALLER_ID_ON = "AT+CLIP=1"


@dataclass(frozen=True)
class CallSettings:
    """``forward_template`` (``[calls]``) is the text of the message that forwards a call
    to OnlineSim (``{caller}``, ``{time}``), None when calls are not forwarded.
    ``records_per_minute`` bounds what a flood of calls writes to the store per SIM;
    ``same_call_within`` is how long after a rejection RING / +CLIP lines are still taken
    for the rejected call (they were on their way already; networks ring every few s)."""

    forward_template: str | None = None
    records_per_minute: int = 20
    same_call_within: float = 1.0


class CallRecorder(Protocol):
    """Where calls are kept (agent.store.Store is one)."""

    async def record_call(
        self,
        *,
        iccid: str,
        slot: str | None,
        caller: str | None,
        at: float,
        rejected_with: str | None,
        forward_template: str | None,
    ) -> tuple[int, int | None]: ...


async def enable_caller_id(session: AtSession) -> bool:
    """``AT+CLIP=1``; False when the modem refuses (calls are then rejected at the
    second ring, without a caller)."""
    try:
        await session.command(CALLER_ID_ON)
    except CommandFailed as exc:
        log.info("%s: %s: %s", session.name, CALLER_ID_ON, exc)
        return False
    return True


class CallHandler:
    """The calls of one modem; the worker hands it every call URC, in order."""

    def __init__(
        self,
        slot: str,
        recorder: CallRecorder | None,
        settings: CallSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.slot = slot
        self._recorder = recorder
        self._settings = settings
        self._clock = clock
        self._wall_clock = wall_clock
        self.caller_id = True  # AT+CLIP=1 was taken
        self._ringing = False  # a RING came and the call is not rejected yet
        self._rejected_at = float("-inf")
        self._hangup: str | None = None  # the command that worked on this modem
        self._window_start = float("-inf")
        self._recorded_in_window = 0
        self.calls_seen = 0
        self.calls_not_recorded = 0
        self._log = LogLimiter(log)

    async def handle(
        self, urc: Urc, *, session: AtSession, iccid: str | None, vendor: VendorProfile
    ) -> None:
        """React to ``RING``, ``+CLIP`` or ``NO CARRIER``."""
        now = self._clock()
        if isinstance(urc, CallEnded):
            self._ringing = False  # the caller gave up before we rejected
            return
        if now - self._rejected_at < self._settings.same_call_within:
            return  # lines of the call just rejected
        if isinstance(urc, CallerId):
            await self._reject(urc.number or None, session, iccid, vendor)
        elif isinstance(urc, Ring):
            if self._ringing or not self.caller_id:
                await self._reject(None, session, iccid, vendor)
            else:
                self._ringing = True  # its +CLIP follows

    async def _reject(
        self,
        caller: str | None,
        session: AtSession,
        iccid: str | None,
        vendor: VendorProfile,
    ) -> None:
        self._ringing = False
        self.calls_seen += 1
        used = await self._hang_up(session, vendor)
        self._rejected_at = self._clock()
        if iccid is None or self._recorder is None:
            return  # no SIM known (or nowhere to keep it): rejected all the same
        if self._rejected_at - self._window_start >= 60.0:
            self._window_start, self._recorded_in_window = self._rejected_at, 0
        if self._recorded_in_window >= self._settings.records_per_minute:
            self.calls_not_recorded += 1
            self._log.warning(
                "calls rejected but not recorded (flood)",
                self.slot,
                "%s: call from %s rejected, not recorded: over %d calls a minute",
                self.slot,
                caller or "a withheld number",
                self._settings.records_per_minute,
            )
            return
        self._recorded_in_window += 1
        await self._recorder.record_call(
            iccid=iccid,
            slot=self.slot,
            caller=caller,
            at=self._wall_clock(),
            rejected_with=used,
            forward_template=self._settings.forward_template,
        )
        log.info(
            "%s: call from %s rejected with %s", self.slot, caller or "a withheld number", used
        )

    async def _hang_up(self, session: AtSession, vendor: VendorProfile) -> str | None:
        """Reject the ringing call; the command that did it, None when every one failed."""
        candidates = (self._hangup,) if self._hangup else vendor.hangup_commands
        for command in candidates:
            try:
                await session.command(command)
            except CommandFailed as exc:
                log.info("%s: %s: %s", self.slot, command, exc)
                continue
            self._hangup = command
            return command
        self._hangup = None  # try them all again at the next call
        self._log.warning(
            "calls that could not be rejected",
            self.slot,
            "%s: no hang-up command worked",
            self.slot,
        )
        return None
