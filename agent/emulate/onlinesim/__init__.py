"""The OnlineSim stand-in: the reseller API of the v1 document, on 127.0.0.1, with faults.

It is what the agent talks to in tests, in ``simedge demo`` and in benchmarks, so it is
strict where the documents are silent (see ``state.py``) and it shows every failure the
agent must survive. Start it in-process::

    standin = OnlineSimStandIn(key="K", webhook_url="http://127.0.0.1:8080/list?secret=S")
    url = await standin.start()            # API base URL; standin.control_url: control
    await standin.set_faults(error_rate=0.3, latency=0.2)
    ...
    await standin.stop()

or as a process: ``simedge emulate onlinesim --listen 127.0.0.1:8765 --key K``, which
prints ``onlinesim stand-in ready url=http://... control=http://...`` when it listens.

The API (``POST /api/resellers/sendNumbersOnline``, ``POST /api/resellers/addMessage``,
``GET /api/resellers/takeOffNumbers``)
    Key: ``Authorization: Bearer KEY`` only; a key in the query string (``?apikey=``) is
    not in the v1 reseller document and counts as no key. Order of checks: unknown path or
    wrong method -> 405 REQUEST_NOT_FOUND; no key -> 401 ERROR_NO_KEY; other key -> 401
    ERROR_WRONG_KEY; forced account fault; then the method's own checks (400 codes).
    Errors are ``{"response": "CODE"}`` (JSON) or the bare ``CODE`` (text/plain) as the
    ``error_body`` fault setting says. ``test=test1`` (query or body) on
    sendNumbersOnline validates and answers without changing anything.

Faults (applied to API requests in this order; none to control requests)
    ``latency``          seconds added before answering (cut short if the API goes down)
    ``reset_rate``       0..1: reset the connection (RST) after reading the request
    ``status_429_rate``  0..1: 429 ``Too Many Requests`` with ``Retry-After: retry_after``
    ``error_rate``       0..1: 500, 502 or 503 with an HTML page, as a proxy would
    ``force``            ERROR_NO_KEY, ERROR_WRONG_KEY, ACCOUNT_BLOCKED, API_ACCESS_DISABLED
                         or API_ACCESS_IP for every request that passes routing and key
    ``down``             true: the API listening socket is closed and open connections
                         reset (clients get ConnectError); false: listen again, same port
    ``error_body``       "json" or "text"
    Rates draw from one ``random.Random(seed)``; rates of 0 or 1 draw nothing.

Control API: JSON over HTTP under ``/_standin`` on the control listener, and on the API
listener too except that ``down`` can only be set on the control listener
    ``GET  /_standin/requests?since=N``  API requests after sequence N: method, path, query,
        headers (Authorization redacted, the key scrubbed everywhere), body, client,
        status, answer, fault, latency_added, received_/answered_ at and _monotonic
    ``GET  /_standin/messages?since=N``  messages accepted by addMessage, with receipt
        times (wall clock and ``time.monotonic()`` of the stand-in's process)
    ``GET  /_standin/online``            ``{"numbers": [item + id + added_at], "ids": {...}}``
    ``GET  /_standin/faults``            ``{"faults": {...}, "seed": N}``
    ``POST /_standin/faults``            any fault settings, plus ``"seed": N`` to reseed
        and ``"clear": true`` to start from the defaults; answers the new settings once
        they hold (a ``down`` change has taken effect)
    ``GET|POST /_standin/earnings``      the takeOffNumbers table ``{"+234...": 75.5}``;
        POST replaces it
    ``POST /_standin/reset``             forget numbers, messages, earnings, requests and
        webhook calls (ids and sequence numbers keep counting; faults stay)
    ``GET  /_standin/webhook``           ``{"url", "interval", "calls": [...]}``
    ``POST /_standin/webhook/call``      call the agent's webhook now; answers the call:
        ``{seq, at, duration, status, body, numbers, error}`` (409 without ``--webhook``)
    Bad control input answers 400 ``{"error": "..."}``.
"""

from agent.emulate.onlinesim.server import OnlineSimStandIn
from agent.emulate.onlinesim.state import (
    Faults,
    ReceivedMessage,
    RecordedRequest,
    StandInState,
    WebhookCall,
)

__all__ = [
    "Faults",
    "OnlineSimStandIn",
    "ReceivedMessage",
    "RecordedRequest",
    "StandInState",
    "WebhookCall",
]
