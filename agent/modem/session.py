"""One open AT port: commands one at a time, URCs whenever they come.

:class:`AtSession` joins the serial transport and the pure :class:`AtFramer`:

- one command in flight: an ``asyncio.Lock`` is held for the whole command, and
  :meth:`AtSession.exchange` holds it across several commands that must not be split
  (e.g. a read and its delete, USSD set-up and request);
- the framer is told which command is pending, and the response future registered,
  *before* the bytes are written, so no byte of the answer can arrive unheard;
- the timeout wraps the wait; the pending state is cleared in ``finally`` whatever ended
  the wait (answer, timeout, cancellation, port gone), so nothing is left behind;
- URCs are recognised by prefix by the framer and put on :attr:`AtSession.urcs`
  whatever command is pending, also in the middle of its response; a consumer registered
  with :meth:`AtSession.listen` is told of each in the same call (a forwarding task cost
  two tasks and two waits per URC, issue 19);
- a vanished device fails the pending command with PortGone and sets :attr:`closed`.

A late answer (after a timeout) ends no command: its lines are logged and dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Self

from agent.errors import CommandFailed, CommandTimeout, PortGone
from agent.logs import TRACE, LogLimiter, get_logger, set_port_trace, trace_logger
from agent.modem.transport import SerialPort
from agent.protocol.framer import (
    ESC,
    NMEA_SENTENCE,
    AtFramer,
    Echo,
    Event,
    Garbage,
    InfoLine,
    Prompt,
    encode_command,
    encode_sms_body,
)
from agent.protocol.results import FinalResult, to_command_failed
from agent.protocol.urc import Urc

log = get_logger("modem.session")

URC_QUEUE_LIMIT = 1024
"""URCs held for a consumer that does not keep up; beyond it new ones are dropped and
logged (a few lines, then a summary a minute: see LogLimiter): a flooding port must not
grow memory or the journal without bound. A dropped +CMTI is not lost for good: its SMS
stays in storage and the next sweep reads it."""


class AtSession:
    """One open AT port; see the module docstring.

    ``garbage`` counts every Garbage event (binary, over-long lines, NMEA, unparsable
    URCs); ``nmea_lines`` counts those that were NMEA sentences, so a probe can tell a GPS
    port from a DIAG port.
    """

    def __init__(
        self, device: str, *, name: str | None = None, command_timeout: float = 5.0
    ) -> None:
        self.device = device
        self.name = name or device
        self.command_timeout = command_timeout  # for every command that names no other
        self.urcs: asyncio.Queue[Urc] = asyncio.Queue(maxsize=URC_QUEUE_LIMIT)
        self.garbage = 0
        self.nmea_lines = 0
        self.urcs_dropped = 0
        self.closed = asyncio.Event()
        self.gone_reason: PortGone | None = None
        self._framer = AtFramer()
        self._port: SerialPort | None = None
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[object] | None = None
        self._response: asyncio.Future[FinalResult] | None = None
        self._prompt: asyncio.Future[None] | None = None  # AT+CMGS's "> ", while awaited
        self._info: list[str] = []
        self._trace = trace_logger(self.name)
        self._flood_log = LogLimiter(log)
        self._byte_arrived = asyncio.Event()  # for resync's wait for a quiet line
        self._on_urc: Callable[[], None] | None = None
        self._on_closed: Callable[[], None] | None = None
        self._deadline = 0.0  # the pending command's, on the loop's clock
        self._deadline_timer: asyncio.TimerHandle | None = None

    @classmethod
    async def open(
        cls,
        device: str,
        *,
        baudrate: int = 115200,
        name: str | None = None,
        command_timeout: float = 5.0,
    ) -> Self:
        """Open ``device``; raise agent.errors.PortGone when it cannot be opened.
        ``command_timeout``: how long a command waits for its answer unless it says."""
        session = cls(device, name=name, command_timeout=command_timeout)
        session._port = await SerialPort.open(
            device, baudrate=baudrate, on_data=session._received, on_lost=session._lost
        )
        return session

    def listen(
        self, on_urc: Callable[[], None] | None, on_closed: Callable[[], None] | None
    ) -> None:
        """Call ``on_urc()`` after each URC is put on :attr:`urcs` and ``on_closed()`` once
        the port is gone (at once if it is already); None for both stops it. The consumer
        takes the URCs off :attr:`urcs` itself, at its own pace: the queue stays the bound."""
        self._on_urc, self._on_closed = on_urc, on_closed
        if on_urc is not None and not self.urcs.empty():
            on_urc()
        if on_closed is not None and self.closed.is_set():
            on_closed()

    # -- commands --------------------------------------------------------------------

    async def command(self, line: str, *, timeout: float | None = None) -> list[str]:  # noqa: ASYNC109
        """Send ``line``; return the info lines of its response.

        Raises CommandFailed (ERROR / +CME / +CMS, with the named code), CommandTimeout
        (no final result in ``timeout`` seconds, :attr:`command_timeout` when None) or
        PortGone (the device vanished). Inside :meth:`exchange` the task that holds the
        port runs it without waiting.
        """
        timeout = self.command_timeout if timeout is None else timeout
        if self._owner is not None and self._owner is asyncio.current_task():
            return await self._run(line, timeout)
        async with self._lock:
            return await self._run(line, timeout)

    async def submit(self, line: str, body: str, *, timeout: float) -> list[str]:  # noqa: ASYNC109
        """``line`` (``AT+CMGS=<n>``), then ``body`` (a PDU in hex) and Ctrl-Z once the
        ``> `` prompt came; the info lines (``+CMGS: <mr>``). ``timeout`` covers the
        prompt and the network's answer together. Raises as :meth:`command` does; after a
        timeout ESC is written, so that a modem still waiting for a body does not take the
        next command for one."""
        if self._owner is not None and self._owner is asyncio.current_task():
            return await self._run(line, timeout, body)
        async with self._lock:
            return await self._run(line, timeout, body)

    def exchange(self) -> _Exchange:
        """Hold the port for a multi-step exchange (``async with``): other tasks' commands
        wait until the block ends, while this task's :meth:`command` calls go straight
        through."""
        return _Exchange(self)

    async def resync(
        self, *, attempts: int = 3, answer_within: float = 1.0, quiet: float = 0.2
    ) -> None:
        """Bring the port back in step: wait until it has been quiet for ``quiet`` seconds
        from now on (so a late answer to a timed-out command, perhaps still in the kernel's
        buffer, cannot end the next command), then send ``AT`` until one is answered.
        Also wakes an autobauding SIM800, which ignores the first ``AT``. Raises
        CommandTimeout when every attempt goes unanswered.
        """
        async with self.exchange():
            while True:
                self._byte_arrived.clear()
                try:
                    async with asyncio.timeout(quiet):
                        await self._byte_arrived.wait()
                except TimeoutError:
                    break
            for attempt in range(1, attempts + 1):
                try:
                    await self._run("AT", answer_within)
                    return
                except CommandTimeout:
                    if attempt == attempts:
                        raise
                except CommandFailed:
                    return  # an ERROR is an answer too: the port is in step

    async def _run(self, line: str, limit: float, body: str | None = None) -> list[str]:
        if self._port is None or self.closed.is_set():
            raise self.gone_reason or PortGone("port is closed", self.name)
        data = encode_command(line)
        loop = asyncio.get_running_loop()
        response: asyncio.Future[FinalResult] = loop.create_future()
        prompt: asyncio.Future[None] | None = loop.create_future() if body is not None else None
        self._info = []
        self._framer.expect(line)
        self._response = response
        self._prompt = prompt
        self._arm_deadline(loop, loop.time() + limit)
        try:
            self._write(data)
            if prompt is not None and body is not None:
                # An error may come instead of the prompt (no SIM, a bad length).
                await asyncio.wait((prompt, response), return_when=asyncio.FIRST_COMPLETED)
                if not response.done():
                    self._framer.expect_body(body)
                    self._write(encode_sms_body(body))
            result = await response
        except TimeoutError:
            if body is not None and not self.closed.is_set():
                self._write(ESC)
            raise CommandTimeout(f"{line}: no final result in {limit:g}s", self.name) from None
        finally:
            if self._owner is None:
                self._disarm_deadline()  # else the exchange's next command may use it
            self._prompt = None
            self._response = None
            if self._framer.pending is not None:
                self._framer.expect(None)
        if not result.ok:
            raise to_command_failed(result, command=line, port=self.name)
        return self._info

    # The deadline is a timer that fails the response future: asyncio.timeout's context
    # costs a dozen more calls per command. One timer serves the commands of an exchange
    # (AT+CMGR and AT+CMGD of an SMS): one armed earlier fires, finds the pending
    # command's deadline later and re-arms for it, instead of a timer made and cancelled
    # per command (issue 19).

    def _arm_deadline(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        self._deadline = when
        timer = self._deadline_timer
        if timer is not None:
            if timer.when() <= when:
                return
            timer.cancel()
        self._deadline_timer = loop.call_at(when, self._deadline_passed, when)

    def _deadline_passed(self, armed_for: float) -> None:
        self._deadline_timer = None
        response = self._response
        if response is None or response.done():
            return
        if self._deadline <= armed_for:
            response.set_exception(TimeoutError())
        else:
            loop = asyncio.get_running_loop()
            self._deadline_timer = loop.call_at(
                self._deadline, self._deadline_passed, self._deadline
            )

    def _disarm_deadline(self) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None

    def _write(self, data: bytes) -> None:
        assert self._port is not None
        if self._trace.isEnabledFor(TRACE):
            self._trace.log(TRACE, "-> %r", data)
        self._port.write(data)

    # -- what the port delivers --------------------------------------------------------

    def _received(self, data: bytes) -> None:
        self._byte_arrived.set()
        if self._trace.isEnabledFor(TRACE):
            self._trace.log(TRACE, "<- %r", data)
        for event in self._framer.feed(data):
            self._dispatch(event)

    def _dispatch(self, event: Event) -> None:
        # The common events first: a response's lines and its result (issue 19).
        if isinstance(event, InfoLine):
            self._info.append(event.text)
        elif isinstance(event, FinalResult):
            if self._response is not None and not self._response.done():
                self._response.set_result(event)
            else:
                log.debug("%s: late final result %r dropped", self.name, event.text)
        elif isinstance(event, Urc):
            try:
                self.urcs.put_nowait(event)
                if self._on_urc is not None:
                    self._on_urc()
            except asyncio.QueueFull:
                self.urcs_dropped += 1
                self._flood_log.warning(
                    "URCs dropped (queue full)",
                    self.name,
                    "%s: URC queue full, dropped %r",
                    self.name,
                    event.line,
                )
        elif isinstance(event, Garbage):
            self.garbage += 1
            if event.reason == NMEA_SENTENCE:
                self.nmea_lines += 1
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s: garbage (%s): %r", self.name, event.reason, event.data[:80])
        elif isinstance(event, Prompt):
            if self._prompt is not None and not self._prompt.done():
                self._prompt.set_result(None)
        elif isinstance(event, Echo):
            pass  # echo is expected until ATE0

    def _lost(self, reason: PortGone | None) -> None:
        if self.closed.is_set():
            return
        self.gone_reason = reason or PortGone("port closed", self.name)
        self.closed.set()
        if self._on_closed is not None:
            self._on_closed()
        if self._response is not None and not self._response.done():
            self._response.set_exception(self.gone_reason)
        if reason is not None:
            log.info("%s: %s", self.name, reason)

    # -- the rest ----------------------------------------------------------------------

    def set_trace(self, enabled: bool) -> None:
        """Log this port's raw AT traffic at TRACE (``simedge.trace.<port>``), or stop."""
        set_port_trace(self.name, enabled)

    async def close(self) -> None:
        """Close the port; a pending command fails with PortGone."""
        if self._port is not None:
            await self._port.close()
        self._lost(None)


class _Exchange:
    """:meth:`AtSession.exchange`'s block: a class rather than a generator-based context
    manager, whose machinery costs a dozen calls more per use, one use per SMS read (issue 19)."""

    __slots__ = ("_session",)

    def __init__(self, session: AtSession) -> None:
        self._session = session

    async def __aenter__(self) -> AtSession:
        session = self._session
        await session._lock.acquire()
        session._owner = asyncio.current_task()
        return session

    async def __aexit__(self, *_exc_info: object) -> None:
        self._session._owner = None
        self._session._disarm_deadline()
        self._session._lock.release()
