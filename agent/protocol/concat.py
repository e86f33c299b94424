"""Multipart (concatenated) SMS assembly: pure state, no clock, no I/O.

Parts of one message share (SIM, sender, reference, total); they arrive out of order,
twice, or never. :class:`Assembler` collects them and hands back a :class:`Message` when
the last one arrives; :meth:`Assembler.expire` delivers what arrived of messages that
waited too long, marked incomplete with the missing sequence numbers (as gammu-smsd and
smstools3 do after their timeout). Times are plain floats (seconds since the epoch) given
by the caller, so tests need no clock and the state survives a restart.

Persistence: :meth:`Assembler.pending` returns the waiting messages as plain dataclasses
(:class:`PendingMessage` with its :class:`Part` dict) and ``Assembler(pending)`` rebuilds
the assembler from them; the SQLite store keeps them between the two.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

from agent.protocol.pdu import SmsDeliver, decode_ucs2

# (SIM key, sender, reference, total): what identifies one multipart message.
Key = tuple[str, str, int, int]


@dataclass(frozen=True)
class Part:
    """One received part, with what is needed to join it to the others."""

    seq: int
    text: str
    encoding: str
    data: bytes
    timestamp: datetime  # the SCTS of this part
    received_at: float


@dataclass
class PendingMessage:
    """A multipart message still waiting for parts: plain data, to persist and restore."""

    sim: str
    sender: str
    ref: int
    total: int
    parts: dict[int, Part] = field(default_factory=dict)

    @property
    def key(self) -> Key:
        return (self.sim, self.sender, self.ref, self.total)

    @property
    def first_received(self) -> float:
        return min(part.received_at for part in self.parts.values())

    @property
    def missing(self) -> tuple[int, ...]:
        return tuple(seq for seq in range(1, self.total + 1) if seq not in self.parts)


@dataclass(frozen=True)
class Message:
    """A whole message (or all that arrived of it, when ``missing`` is not empty)."""

    sim: str
    sender: str
    text: str
    encoding: str
    data: bytes
    timestamp: datetime  # SCTS of the first part present
    received_at: float  # when its first part arrived
    total: int
    ref: int | None  # None for a single-part SMS
    missing: tuple[int, ...] = ()

    @property
    def complete(self) -> bool:
        return not self.missing


class Assembler:
    """Collects parts of concatenated SMS per (SIM, sender, reference, total)."""

    def __init__(self, pending: Iterable[PendingMessage] = ()) -> None:
        self._pending: dict[Key, PendingMessage] = {}
        # Keys completed recently, with when: a part that comes again after its message
        # was delivered (an SMSC retry) is a duplicate, not the start of a new message.
        # Forgotten by expire() after the same timeout; not persisted (the store also
        # dedupes by PDU).
        self._completed: dict[Key, float] = {}
        for message in pending:
            self._pending[message.key] = replace(message, parts=dict(message.parts))

    def add(self, sim: str, sms: SmsDeliver, received_at: float) -> Message | None:
        """Take one received SMS; return the message it completes, or None while waiting.

        A single-part SMS is returned at once. A part already held (same seq), or one of a
        message completed since the last :meth:`expire` timeout, is ignored.
        """
        part = Part(
            sms.concat.seq if sms.concat else 1,
            sms.text,
            sms.encoding,
            sms.data,
            sms.timestamp,
            received_at,
        )
        if sms.concat is None or sms.concat.total == 1:
            return _join(sim, sms.sender, None, 1, {1: part})
        key = (sim, sms.sender, sms.concat.ref, sms.concat.total)
        if key in self._completed:
            return None
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = PendingMessage(sim, sms.sender, *key[2:])
        if part.seq in pending.parts:
            return None
        pending.parts[part.seq] = part
        if pending.missing:
            return None
        del self._pending[key]
        self._completed[key] = received_at
        return _join(sim, sms.sender, pending.ref, pending.total, pending.parts)

    def expire(self, now: float, timeout: float) -> list[Message]:
        """Give up on messages whose first part arrived ``timeout`` seconds before ``now``:
        deliver what arrived, marked with the missing sequence numbers, oldest first."""
        self._completed = {key: at for key, at in self._completed.items() if now - at < timeout}
        overdue = [
            pending for pending in self._pending.values() if now - pending.first_received >= timeout
        ]
        overdue.sort(key=lambda pending: pending.first_received)
        for pending in overdue:
            del self._pending[pending.key]
        return [
            _join(pending.sim, pending.sender, pending.ref, pending.total, pending.parts)
            for pending in overdue
        ]

    def pending(self) -> list[PendingMessage]:
        """The waiting messages, as copies the caller may persist."""
        return [replace(message, parts=dict(message.parts)) for message in self._pending.values()]

    def __len__(self) -> int:
        return len(self._pending)


def _join(sim: str, sender: str, ref: int | None, total: int, parts: dict[int, Part]) -> Message:
    ordered = [parts[seq] for seq in sorted(parts)]
    encodings = {part.encoding for part in ordered}
    data = b"".join(part.data for part in ordered)
    if encodings == {"ucs2"} and not any(len(part.data) % 2 for part in ordered):
        # Joined before decoding: some senders cut a surrogate pair between two parts.
        text, _damaged = decode_ucs2(data)
    else:
        text = "".join(part.text for part in ordered)
    return Message(
        sim=sim,
        sender=sender,
        text=text,
        encoding=ordered[0].encoding if len(encodings) == 1 else "mixed",
        data=data,
        timestamp=ordered[0].timestamp,
        received_at=min(part.received_at for part in ordered),
        total=total,
        ref=ref,
        missing=tuple(seq for seq in range(1, total + 1) if seq not in parts),
    )
