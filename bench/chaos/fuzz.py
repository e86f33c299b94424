"""Fuzzing for a bounded time: no crash, no hang.

- PDUs: SMS-DELIVERs made by ``encode_deliver`` (GSM 7-bit, UCS2, multipart, national
  shift tables), then mutated (bits flipped, octets inserted, deleted, truncated, spliced,
  lengths lied about) or random, into ``agent.protocol.pdu.decode``, strict and salvaging
  (what the agent does): only ``PduError``.
- Salvage (docs/pdu-decoder.md): the faults salvage decodes around, made in those PDUs
  (any SCTS octets, a user data length that lies upward, user data cut short, a header
  element that overruns its header): no readable text dropped. The text salvaged is the
  original (a cut one: the prefix its octets hold), or the PDU kept back has no text left.
- AT output: transcripts of real answers and URCs, mutated the same way and fed to
  ``AtFramer`` in random chunks with a random pending command; every line it frames goes
  through the typed parsers and the URC parser: only ``AtParseError`` (``PduError`` for the
  PDU inside a +CMT).
- The webhook: malformed HTTP over raw sockets at the real agent's webhook port (garbage,
  broken request lines, lying Content-Length, bad chunking, huge headers, non-UTF-8 paths
  and tokens, half requests then silence): afterwards the process is alive and ``/healthz``
  answers 200.

The parser fuzzing runs in a child process (``python -m bench.chaos.fuzz SECONDS SEED``)
so that a hang is seen as one: the child is killed when it overruns its time.

Budget: 20 s of parser fuzzing, 20 s of webhook fuzzing, plus the world's start.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.chaos import FAIL, PASS, Verdict
from bench.chaos.world import TOKEN, World

NAME = "fuzz"
BUDGET = 90.0
PARSER_SECONDS = 20.0
WEBHOOK_SECONDS = 20.0
SLOW_INPUT = 1.0  # one input taking longer than this counts as a hang

TEXTS = (
    "Ваш код 123456",
    "VKcom: 4821 is your code",
    "Long " + "message that spans parts. " * 12,
    "{}[]~|€^\\ escape chars",
    "🙂 emoji 😀" * 10,
    "Kodunuz: 1234 ğüşıöç",
)
AT_LINES = (
    "OK",
    "ERROR",
    "+CME ERROR: 10",
    "+CMS ERROR: 321",
    '+CMTI: "SM",3',
    '+CMTI: "ME",12',
    "+CREG: 0,1",
    '+CREG: 2,5,"1A2B","00C3F1",7',
    "+CSQ: 17,99",
    '+COPS: 0,2,"25001",7',
    '+CPMS: "SM",3,30,"SM",3,30,"SM",3,30',
    "+CPIN: READY",
    '+CUSD: 0,"Balance 12.50 rub",15',
    "+CCID: 89701012345678901234",
    "^ICCID: 98071021436587092143",
    "250011234567890",
    "861234567890123",
    '+CNUM: "","+79161234567",145',
    '+CCLK: "26/11/25,22:45:29+12"',
    "+CMGS: 42",
    "RDY",
    "+CFUN: 1",
    "^RSSI: 18",
    "$GPGGA,,,,,,0,,,,,,,,*66",
    "+QIND: SMS DONE",
    "+CNMI: 2,1,0,0,0",
    "+CSMS: 1,1,1,1",
)
COMMANDS = (
    "AT+CSQ",
    "AT+CREG?",
    "AT+COPS?",
    "AT+CPMS?",
    "AT+CMGL=4",
    "AT+CMGR=1",
    "AT+CCID",
    "AT+CIMI",
    "AT+CGSN",
    "AT+CNUM",
    "AT+CCLK?",
    'AT+CUSD=1,"*100#",15',
    "AT+CPIN?",
    None,
)


def _pdus(rng: random.Random) -> list[bytes]:
    from agent.protocol.pdu import encode_deliver

    stamp = datetime(2026, 11, 25, 12, 0, tzinfo=UTC) + timedelta(minutes=rng.randint(0, 9999))
    pdus: list[bytes] = []
    for text in TEXTS:
        for sender in ("+79161234567", "VKcom", "900"):
            pdus += encode_deliver(text, sender, timestamp=stamp, ref_bits=rng.choice((8, 16)))
    pdus += encode_deliver("Kodunuz ğüşıöç", "Turk", timestamp=stamp, language="turkish")
    return pdus


def mutate(data: bytes, rng: random.Random, corpus: Sequence[bytes]) -> bytes:
    """One to four random edits of ``data``; sometimes spliced with another corpus item."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        what = rng.randrange(8)
        at = rng.randrange(len(out) + 1)
        if what == 0 and out:
            out[min(at, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif what == 1:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif what == 2 and out:
            del out[at : at + rng.randint(1, 8)]
        elif what == 3:
            del out[at:]
        elif what == 4 and out:
            out[min(at, len(out) - 1)] = rng.choice((0x00, 0xFF, 0x7F, 0x80, 0xA0))
        elif what == 5:
            other = rng.choice(corpus)
            cut = rng.randrange(len(other) + 1)
            out = out[:at] + bytearray(other[cut:])
        elif what == 6:
            out[at:at] = out[: rng.randint(0, 32)] * rng.randint(1, 4)
        else:
            out = bytearray(rng.randbytes(rng.randint(0, 200)))
    return bytes(out)


class _Findings:
    """Counts inputs; keeps the first few unexpected errors and slow inputs, with input."""

    def __init__(self) -> None:
        self.inputs = 0
        self.problems: list[str] = []

    def run(
        self, call: Callable[[], Any], allowed: tuple[type[BaseException], ...], raw: Any
    ) -> None:
        self.inputs += 1
        started = time.perf_counter()
        try:
            call()
        except allowed:
            pass
        except Exception as exc:
            if len(self.problems) < 5:
                self.problems.append(f"{type(exc).__name__}: {exc} on {raw!r:.120}")
        took = time.perf_counter() - started
        if took > SLOW_INPUT and len(self.problems) < 5:
            self.problems.append(f"{took:.1f} s on one input {raw!r:.120}")


def fuzz_parsers(seconds: float, seed: int) -> dict[str, Any]:
    """PDUs into decode, AT bytes through the framer and the typed parsers, for
    ``seconds``; what was tried and what went wrong."""
    from agent.errors import PduError
    from agent.protocol import commands
    from agent.protocol.pdu import decode

    rng = random.Random(seed)
    pdus = _pdus(rng)
    pdu_hex = [pdu.hex().upper().encode() for pdu in pdus]
    at_corpus = [line.encode() for line in AT_LINES]
    at_corpus += [
        b"+CMT: ,%d\r\n" % (len(pdu) - 1) + hexed for pdu, hexed in zip(pdus, pdu_hex, strict=True)
    ]
    at_corpus += [
        b"+CMGL: 1,1,,%d\r\n" % (len(pdu) - 1) + hexed
        for pdu, hexed in zip(pdus, pdu_hex, strict=True)
    ]
    # The typed parsers: those of a response's lines, and those of one line.
    parsers = [
        getattr(commands, name)
        for name in dir(commands)
        if name.startswith("parse_") and callable(getattr(commands, name))
    ]
    parsers = [
        parse if _first_parameter(parse) == "lines" else _per_line(parse) for parse in parsers
    ]
    found = _Findings()
    salvaged = _Salvage([(pdu, decode(pdu).text) for pdu in pdus])
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(50):
            data = mutate(rng.choice(pdus), rng, pdus)
            found.run(lambda data=data: decode(data), (PduError,), data)
            found.run(lambda data=data: decode(data, salvage=True), (PduError,), data)
            text = mutate(rng.choice(pdu_hex), rng, pdu_hex).decode("latin-1")
            found.run(lambda text=text: decode(text), (PduError,), text)
            salvaged.one(rng, found)
        transcript = b"\r\n".join(
            mutate(item, rng, at_corpus) if rng.random() < 0.5 else item
            for item in rng.choices(at_corpus, k=rng.randint(1, 12))
        )
        _through_parsers(transcript, rng, found, parsers)
    return {
        "inputs": found.inputs,
        "salvage_inputs": salvaged.inputs,
        "salvaged": salvaged.forwarded,
        "problems": found.problems,
    }


class _Salvage:
    """Faults salvage must decode around, made at the right octets of sound PDUs, and the
    check that the readable text survives each."""

    def __init__(self, corpus: list[tuple[bytes, str]]) -> None:
        self.corpus = corpus
        self.inputs = 0
        self.forwarded = 0

    def one(self, rng: random.Random, found: _Findings) -> None:
        from agent.errors import PduError
        from agent.protocol.pdu import SmsDeliver, decode

        original, text = rng.choice(self.corpus)
        pdu = bytearray(original)
        smsc = 1 + pdu[0]
        scts = smsc + 1 + 2 + (pdu[smsc + 1] + 1) // 2 + 2  # first octet, TP-OA, PID, DCS
        udl_at = scts + 7
        # A header whose first element is a concatenation: losing that element loses the
        # part's place, not its text (a lost language element would change characters).
        concat_first = bool(pdu[smsc] & 0x40) and pdu[udl_at + 2] in (0x00, 0x08)
        ucs2 = decode(original).encoding == "ucs2"
        fault = rng.randrange(4 if concat_first else 3)
        expected = text
        if fault == 0:  # any seven octets as the timestamp
            pdu[scts:udl_at] = rng.randbytes(7)
        elif fault == 1:  # the user data length lies upward, beyond what the octets hold
            present = len(pdu) - udl_at - 1
            most = present if ucs2 else present * 8 // 7
            pdu[udl_at] = min(255, most + rng.randint(1, 120))
        elif fault == 2:  # the user data is cut short
            del pdu[rng.randint(udl_at + 1, len(pdu)) :]
            expected = ""  # only a prefix is asked of a cut text
        else:  # the first header element's length overruns the header
            pdu[udl_at + 3] = pdu[udl_at + 1] + rng.randint(0, 40)
        self.inputs += 1
        try:
            sms = decode(bytes(pdu), salvage=True)
        except PduError as exc:
            # Refusing is right only when nothing readable was left, i.e. a cut text.
            if fault != 2 and len(found.problems) < 5:
                found.problems.append(f"salvage refused {bytes(pdu).hex()}: {exc}")
            return
        except Exception as exc:
            if len(found.problems) < 5:
                found.problems.append(f"salvage: {type(exc).__name__}: {exc} on {pdu.hex()}")
            return
        self.forwarded += bool(sms.problems)
        assert isinstance(sms, SmsDeliver)
        # A cut UCS2 text may end in U+FFFD where the cut split a character.
        kept = sms.text.removesuffix("\ufffd") if ucs2 else sms.text
        lost = sms.text != expected if expected else not text.startswith(kept)
        if lost and len(found.problems) < 5:
            found.problems.append(f"salvage lost text of {pdu.hex()}: {sms.text!r} vs {text!r}")


def _first_parameter(function: Callable[..., Any]) -> str:
    return next(iter(inspect.signature(function).parameters))


def _per_line(parse: Callable[[str], Any]) -> Callable[[list[str]], None]:
    def each(lines: list[str]) -> None:
        for line in lines:
            parse(line)

    return each


def _through_parsers(
    transcript: bytes, rng: random.Random, found: _Findings, parsers: list[Callable[..., Any]]
) -> None:
    """One AT transcript, in random chunks, through a framer expecting a random command;
    its lines (framed, and raw) through every typed parser, the final-result parser and
    the URC parser."""
    from agent.errors import AtParseError, PduError
    from agent.protocol.framer import AtFramer, InfoLine
    from agent.protocol.results import parse_final_result
    from agent.protocol.urc import parse_urc, urc_name

    framer = AtFramer()
    framer.expect(rng.choice(COMMANDS))
    events: list[Any] = []

    def feed() -> None:
        at = 0
        while at < len(transcript):
            step = rng.randint(1, 64)
            events.extend(framer.feed(transcript[at : at + step]))
            at += step

    found.run(feed, (), transcript)
    lines = [event.text for event in events if isinstance(event, InfoLine)]
    lines += [line.decode("latin-1") for line in transcript.split(b"\r\n")]
    for parse in parsers:
        found.run(lambda parse=parse: parse(lines), (AtParseError, PduError), lines)
    for line in lines:
        found.run(lambda line=line: parse_final_result(line), (AtParseError,), line)
        if urc_name(line) is not None:
            found.run(lambda line=line: parse_urc(line), (AtParseError, PduError), line)


BAD_REQUESTS: tuple[bytes, ...] = (
    b"\x00\x01\x02\xff\xfe garbage\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"POST /onlinesim/numbers HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\nshort",
    b"POST /onlinesim/numbers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
    b"GET /onlinesim/numbers?token=%ff%fe%00 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /\xff\xfe\xfd HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /onlinesim/numbers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xff\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\n" + b"X-Long: " + b"a" * 70000 + b"\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % n for n in range(500)) + b"\r\n",
    b"GET /onlinesim/numbers?" + b"token=x&" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\n",  # never finished
    b"POST /onlinesim/numbers HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n",  # no body
    b"DELETE /onlinesim/numbers HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET http://evil/ HTTP/1.1\r\nHost: x\r\n\r\n",
)


async def _send_raw(port: int, payload: bytes, source: str = "127.0.0.1") -> None:
    """One connection from ``source`` (an address of 127.0.0.0/8, all of which Linux
    routes to lo): the payload, a short read of whatever comes back, close."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    except OSError:
        return
    try:
        writer.write(payload)
        await writer.drain()
        async with asyncio.timeout(0.5):
            await reader.read(65536)
    except (OSError, TimeoutError):
        pass
    finally:
        writer.close()


async def fuzz_webhook(world: World, seconds: float) -> tuple[int, str | None]:
    """Malformed requests at the agent's webhook for ``seconds``; how many, and what went
    wrong afterwards (None: alive and healthy)."""
    rng = random.Random(world.seed)
    port = world.webhook_port
    good = f"GET /onlinesim/numbers?token={TOKEN} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    corpus = [*BAD_REQUESTS, good]
    sent = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        batch = [
            rng.choice(BAD_REQUESTS)
            if rng.random() < 0.4
            else mutate(rng.choice(corpus), rng, corpus)
            for _ in range(16)
        ]
        # From 16 addresses, one connection each: the webhook takes 8 per address, and a
        # request refused at accept never reaches the parser this is meant to fuzz.
        await asyncio.gather(
            *(_send_raw(port, payload, f"127.0.0.{10 + n}") for n, payload in enumerate(batch))
        )
        sent += len(batch)
    if not world.agent.alive:
        return sent, "the agent process died"
    try:
        async with httpx.AsyncClient(timeout=5.0) as client:
            health = await client.get(f"http://127.0.0.1:{port}/healthz")
    except httpx.HTTPError as exc:
        return sent, f"/healthz did not answer afterwards: {exc!r}"
    if health.status_code != 200:
        return sent, f"/healthz answered {health.status_code} afterwards: {health.text[:200]}"
    return sent, None


async def _parsers_in_child(seconds: float, seed: int) -> dict[str, Any]:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.chaos.fuzz",
        str(seconds),
        str(seed),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(seconds + 20.0):
            output, _ = await child.communicate()
    except TimeoutError:
        child.kill()
        await child.wait()
        return {"inputs": 0, "problems": [f"the parser fuzzing hung (over {seconds + 20:.0f} s)"]}
    if child.returncode != 0:
        return {"inputs": 0, "problems": [f"the parser fuzzing exited {child.returncode}"]}
    result: dict[str, Any] = json.loads(output)
    return result


async def run(folder: Path) -> Verdict:
    started = time.monotonic()
    async with World(folder, modems=2, profile="sim800", seed=30) as world:
        await world.start_agent()
        parsers, (requests, webhook_problem) = await asyncio.gather(
            _parsers_in_child(PARSER_SECONDS, seed=30), fuzz_webhook(world, WEBHOOK_SECONDS)
        )
    took = time.monotonic() - started
    figures = (
        f"{parsers['inputs']:,} parser inputs ({parsers['salvage_inputs']:,} salvage faults, "
        f"{parsers['salvaged']:,} forwarded around them, no text lost), "
        f"{requests:,} malformed webhook requests"
    )
    problems = list(parsers["problems"]) + ([webhook_problem] if webhook_problem else [])
    if problems:
        return Verdict(NAME, FAIL, f"{figures}; {'; '.join(problems)}", took)
    return Verdict(NAME, PASS, f"{figures}: no crash, no hang, /healthz 200 after", took)


if __name__ == "__main__":
    print(json.dumps(fuzz_parsers(float(sys.argv[1]), int(sys.argv[2]))))
