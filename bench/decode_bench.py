"""PDUs decoded per second on one core: ours, smspdudecoder and python-gammu, same corpus.

``measure()`` returns one row per decoder that can be imported; ``run()`` gives them as
``bench.Result`` for ``python -m bench decode_bench``. The corpus mixes what a reseller
receives: short GSM 7-bit codes, full 160-septet texts, UCS2 (Cyrillic, emoji), parts of
concatenated messages, alphanumeric senders.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from agent.protocol.pdu import decode, encode_deliver
from bench import Result

COMMAND = "python -m bench decode_bench"


@dataclass(frozen=True)
class Row:
    decoder: str
    pdus_per_second: float
    microseconds_per_pdu: float


def corpus(size: int = 200, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    texts = [
        lambda: f"Your code is {rng.randrange(10**6):06d}",
        lambda: "".join(rng.choice("abcdefghij klmnop.,") for _ in range(160)),
        lambda: "Ваш код: " + str(rng.randrange(10**4)) + " 😀",
        lambda: "".join(rng.choice("long message ") for _ in range(400)),
    ]
    senders = ["+79161234567", "VKcom", "Google", "89161234567"]
    pdus: list[bytes] = []
    while len(pdus) < size:
        stamp = datetime(2024, 5, 1, rng.randrange(24), tzinfo=UTC)
        pdus += encode_deliver(rng.choice(texts)(), rng.choice(senders), timestamp=stamp)
    return pdus[:size]


def _decoders() -> dict[str, Callable[[bytes, str], object]]:
    decoders: dict[str, Callable[[bytes, str], object]] = {
        "simedge": lambda raw, hexed: decode(hexed),
    }
    try:
        from smspdudecoder.easy import read_incoming_sms
    except ImportError:
        pass
    else:
        decoders["smspdudecoder"] = lambda raw, hexed: read_incoming_sms(hexed)
    try:
        import gammu
    except ImportError:
        pass
    else:
        decoders["python-gammu"] = lambda raw, hexed: gammu.DecodePDU(raw)
    return decoders


def measure(pdus: list[bytes] | None = None, min_seconds: float = 1.0) -> list[Row]:
    """Decode the corpus (hex, as a modem prints it) repeatedly for at least
    ``min_seconds`` per decoder; one thread, so one core."""
    pdus = pdus if pdus is not None else corpus()
    pairs = [(pdu, pdu.hex().upper()) for pdu in pdus]
    rows = []
    for name, decoder in _decoders().items():
        count = 0
        started = time.perf_counter()
        while (elapsed := time.perf_counter() - started) < min_seconds:
            for raw, hexed in pairs:
                decoder(raw, hexed)
            count += len(pairs)
        rows.append(Row(name, count / elapsed, 1e6 * elapsed / count))
    return rows


def run() -> list[Result]:
    return [
        Result(
            f"PDU decode, {row.decoder}",
            row.pdus_per_second,
            "PDU/s",
            COMMAND,
            f"{row.microseconds_per_pdu:.1f} µs each, one core, mixed corpus",
        )
        for row in measure()
    ]
