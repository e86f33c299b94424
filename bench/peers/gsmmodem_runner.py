"""python-gsmmodem-new on many ports, as its README shows: ``GsmModem(port, baud,
smsReceivedCallbackFunc=...)`` then ``connect()`` (with its autobaud wait), one per port
in one process (each has its reader thread). The callback appends ``monotonic<TAB>text``
to OUT; one line ``gsmmodem ready N`` on stdout says every port is connected.

    python bench/peers/gsmmodem_runner.py OUT PORT [PORT ...]
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from typing import Any

from gsmmodem.modem import GsmModem


def main(out_path: str, ports: list[str]) -> int:
    lock = threading.Lock()
    out = open(out_path, "a", buffering=1)  # noqa: SIM115 - open for the process's life

    def received(sms: Any) -> None:
        stamp = time.monotonic()
        with lock:
            out.write(f"{stamp}\t{sms.text}\n")

    modems = []
    for port in ports:
        modem = GsmModem(port, 115200, smsReceivedCallbackFunc=received)
        # A SIM800 autobauds: its first AT goes unanswered. The library's own remedy is
        # to send AT until answered before its set-up commands.
        modem.connect(waitingForModemToStartInSeconds=5)
        modems.append(modem)
    print(f"gsmmodem ready {len(modems)}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    for modem in modems:
        modem.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
