"""One USSD question and its answer, for whoever needs to ask the network something.

The own number (:mod:`agent.modem.own_number`), the balance (:mod:`agent.modem.balance`)
and the keep-alive (:mod:`agent.modem.keepalive`) all ask the same way: ``AT+CUSD=1`` with
the code, then the ``+CUSD`` URC that the worker forwards to a queue. What differs per
module is only the wording of the request (Huawei sticks want the code GSM 7-bit packed)
and of the answer; :func:`agent.protocol.commands.decode_ussd_string` reads the answer
whether it comes GSM 7-bit packed hex, UCS2 hex or plain text (it depends on the module
and on ``+CSCS``, see docs/modems.md).

The question is asked from the port's owner task; the network may take seconds to answer
(20 s when it never does), and an SMS must not wait for it: the answer comes from an
:class:`Answers` source, which for the worker (``agent.modem.worker``) reads the SMS the
modem announces while the answer is awaited, in the same task (27.007 7.15: with
``AT+CUSD=1`` the result codes follow as ``+CUSD`` URCs and the port takes other commands
meanwhile). Answers forwarded to a plain queue (a probe's reader, a test) are waited for
as they come (:class:`QueuedAnswers`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from agent.errors import CommandFailed, CommandTimeout
from agent.logs import get_logger
from agent.modem.session import AtSession
from agent.modem.vendors import UssdCoding, VendorProfile
from agent.protocol import gsm7
from agent.protocol.commands import UssdResponse, UssdStatus
from agent.protocol.urc import UssdReceived

log = get_logger("modem.ussd")


@dataclass(frozen=True)
class UssdAnswer:
    """What came back for ``code``: the decoded ``text`` (None when the network sent
    none), the answer's status, or ``error`` saying why there is no answer."""

    code: str
    text: str | None = None
    status: UssdStatus | None = None
    raw: str | None = None  # the string as the modem printed it (hex or text)
    error: str | None = None

    @classmethod
    def of(cls, code: str, response: UssdResponse) -> UssdAnswer:
        error = None
        if response.text is None:
            error = f"answered {response.status.name} without text"
        return cls(code, response.text, response.status, response.raw, error)


class WaitCut(Exception):
    """The wait for an answer ended before its time, for the reason given (the SIM
    changed, the port failed meanwhile). Raised by an :class:`Answers` source and turned
    into the question's error by :func:`ask`; it goes no further."""


class Answers(Protocol):
    """Where the ``+CUSD`` answers to a question come from."""

    def discard_old(self) -> None:
        """Drop answers that came before the question: they belong to an older one."""

    async def next(self, within: float) -> UssdReceived | None:
        """The next answer, or None when none came within ``within`` seconds; raises
        :class:`WaitCut` when the wait ends early."""


class QueuedAnswers:
    """Answers forwarded to a queue; waiting for one is only waiting."""

    def __init__(self, queue: asyncio.Queue[UssdReceived]) -> None:
        self._queue = queue

    def discard_old(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    async def next(self, within: float) -> UssdReceived | None:
        try:
            async with asyncio.timeout(within):
                return await self._queue.get()
        except TimeoutError:
            return None


def ussd_request(code: str, vendor: VendorProfile) -> str:
    """The ``AT+CUSD`` line for ``code``, written as ``vendor`` wants it (Huawei sticks
    want it GSM 7-bit packed)."""
    if vendor.ussd_coding is UssdCoding.GSM7_PACKED_HEX:
        septets = b"".join(gsm7.encode_chars(code) or ())
        packed = gsm7.pack_septets(septets)
        if len(septets) % 8 == 7:
            # 23.038 6.1.2.3.1: 7 spare bits would read as "@"; they carry CR instead.
            packed = packed[:-1] + bytes((packed[-1] | (0x0D << 1),))
        code = packed.hex().upper()
    return f'AT+CUSD=1,"{code}",15'


async def ask(
    session: AtSession,
    code: str,
    vendor: VendorProfile,
    answers: Answers,
    *,
    answer_within: float = 20.0,
) -> UssdAnswer:
    """Send ``code`` and wait (up to ``answer_within``) for the ``+CUSD`` answer from
    ``answers``. A menu answer (``+CUSD: 1``, further action required) is closed with
    ``AT+CUSD=2`` so that the session does not hang open on the network side."""
    answers.discard_old()
    try:
        await session.command(ussd_request(code, vendor))
    except (CommandFailed, CommandTimeout) as exc:
        log.info("%s: USSD %s: %s", session.name, code, exc)
        return UssdAnswer(code, error=f"refused: {exc}")
    try:
        received = await answers.next(answer_within)
    except WaitCut as cut:
        log.info("%s: USSD %s: no answer: %s", session.name, code, cut)
        return UssdAnswer(code, error=f"no answer: {cut}")
    if received is None:
        log.info("%s: USSD %s: no answer in %gs", session.name, code, answer_within)
        return UssdAnswer(code, error=f"no answer in {answer_within:g} s")
    response = received.response
    if response.status is UssdStatus.ACTION_REQUIRED:
        await cancel(session)
    answer = UssdAnswer.of(code, response)
    if answer.error:
        log.info("%s: USSD %s: %s", session.name, code, answer.error)
    return answer


async def cancel(session: AtSession) -> None:
    """End an open USSD session (``AT+CUSD=2``); a refusal is only logged."""
    try:
        await session.command("AT+CUSD=2")
    except (CommandFailed, CommandTimeout) as exc:
        log.info("%s: AT+CUSD=2: %s", session.name, exc)
