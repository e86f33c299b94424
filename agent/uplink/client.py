"""The HTTP client of OnlineSim's reseller push API (sendNumbersOnline, addMessage,
takeOffNumbers), over httpx transports of one connection each (see ``OnlineSimClient``).

Every way a call can fail — an httpx exception, an HTTP status, an error code in either
body form (JSON ``{"response": "CODE"}`` of the v1 document or the bare text code of the
2023 spec) — is translated into ``agent.errors`` in exactly one place,
:func:`map_errors` / :func:`raise_for_answer`, so that the pump, the numbers loop and the
retry policy only ever see ``UplinkTransient``, ``UplinkAccountError``, ``UplinkRejected``
or ``UplinkNoNumber``.

The API key travels only in the ``Authorization`` header. It is never formatted into a
message, a repr or a log line, and any echo of it in a server's body is redacted before
the body is kept on an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import importlib.util
import json
import logging
import math
import os
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import httpx

from agent import __version__
from agent.config import OnlineSimConfig
from agent.errors import (
    ConfigError,
    UplinkAccountError,
    UplinkError,
    UplinkNoNumber,
    UplinkRejected,
    UplinkTransient,
)
from agent.uplink.network import AsyncioBackend, UplinkTransport

log = logging.getLogger("simedge.uplink")

USER_AGENT = f"simedge/{__version__}"
JSON_CONTENT_TYPE = "application/json; charset=utf-8"

#: Codes that mean "a person must fix the key, the account or the URL" (401/403/405).
ACCOUNT_CODES = frozenset(
    {
        "ERROR_NO_KEY",
        "ERROR_WRONG_KEY",
        "ACCOUNT_BLOCKED",
        "API_ACCESS_DISABLED",
        "API_ACCESS_IP",
        "REQUEST_NOT_FOUND",
    }
)
#: Codes that mean "this request can never succeed as it is": a dead letter.
REJECT_CODES = frozenset({"NUMBER_FORMAT_ERROR", "ERROR_PARAMS", "ERROR_DATE"})
NO_NUMBER = "NO_NUMBER"
#: What :func:`_answer_code` returns for ``response: 1``.
_SUCCESS = "1"
KNOWN_CODES = ACCOUNT_CODES | REJECT_CODES | {NO_NUMBER}

#: A bare text error code as the 2023 spec sends it (``NO_NUMBER``), not an HTML page.
_BARE_CODE = re.compile(r"[A-Z][A-Z0-9_]{1,63}")
_INTERNATIONAL_NUMBER = re.compile(r"\+[1-9]\d{6,14}")
_PORT_ID_MAX = 100
#: How much of an unexpected body goes into a log line; the whole body stays on the error.
_BODY_PREVIEW = 200
#: The longest answer read. OnlineSim's answers are a few hundred bytes; the longest
#: (takeOffNumbers' list, some 100 bytes a number) stays far below. Past it the call fails
#: as the link's (a proxy's or portal's page, an endless stream), and what was read of it
#: is kept on the error.
MAX_ANSWER = 1024 * 1024
#: How much of an answer past MAX_ANSWER is kept on the error (and so in the database).
_KEPT_OF_TOO_LARGE = 16 * 1024


@dataclass(frozen=True)
class UplinkSettings:
    """Where and how to reach OnlineSim; built by the configuration layer.

    ``base_url`` is the API root that partner support hands out, up to and without the
    method name (e.g. ``https://onlinesim.ru/api/resellers``). The four timeouts are
    httpx's: connect, read (between bytes of the answer), write and pool (waiting for a
    free pooled connection). ``call_timeout`` bounds the whole call: each phase in time
    is not enough, since an answer that trickles in a byte at a time never breaks the
    read timeout and would hold the SIM's queue behind it for as long as it trickles.
    """

    base_url: str
    api_key: str = field(repr=False)
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    write_timeout: float = 30.0
    pool_timeout: float = 10.0
    call_timeout: float = 60.0
    max_connections: int = 4

    @classmethod
    def from_config(cls, onlinesim: OnlineSimConfig) -> UplinkSettings:
        """Settings from the ``[onlinesim]`` table, whose one ``timeout`` bounds each phase
        and the whole call ("seconds before an API call is abandoned", README)."""
        return cls(
            base_url=onlinesim.base_url,
            api_key=onlinesim.api_key,
            connect_timeout=onlinesim.timeout,
            read_timeout=onlinesim.timeout,
            write_timeout=onlinesim.timeout,
            pool_timeout=onlinesim.timeout,
            call_timeout=onlinesim.timeout,
        )


@dataclass(frozen=True)
class NumberItem:
    """One live number as sendNumbersOnline wants it; ``None`` fields are not sent.

    ``operator`` is MCC+MNC digits (first 5 or 6 digits of the IMSI); ``port_id`` the
    stable physical slot name (at most 100 characters) that a person on site can find.
    """

    number: str
    country_id: int
    date_start: int
    date_stop: int | None = None
    operator: str | None = None
    price: float | None = None
    balance: float | None = None
    port_id: str | None = None

    def __post_init__(self) -> None:
        # Reporting a number OnlineSim cannot parse rejects the whole list; refuse here,
        # naming the field, before it costs a round trip and blocks the live numbers.
        if not _INTERNATIONAL_NUMBER.fullmatch(self.number):
            raise UplinkRejected(
                f"NumberItem.number {self.number!r}: not '+' and 7 to 15 digits",
                code="NUMBER_FORMAT_ERROR",
                body=self.number,
            )
        if self.port_id is not None and len(self.port_id) > _PORT_ID_MAX:
            raise UplinkRejected(
                f"NumberItem.port_id {self.port_id!r}: longer than {_PORT_ID_MAX} characters",
                code="ERROR_PARAMS",
                body=self.port_id,
            )

    def to_json(self) -> dict[str, Any]:
        """The item in the v1 examples' form: numbers as JSON numbers, absent fields left out."""
        item: dict[str, Any] = {
            "number": self.number,
            "country_id": self.country_id,
            "date_start": self.date_start,
        }
        if self.date_stop is not None:
            item["date_stop"] = self.date_stop
        if self.operator is not None:
            # The v1 examples send the MCC+MNC as a number (28967); MCCs never start with 0.
            item["operator"] = int(self.operator) if self.operator.isdigit() else self.operator
        if self.price is not None:
            item["price"] = self.price
        if self.balance is not None:
            item["balance"] = self.balance
        if self.port_id is not None:
            item["port_id"] = self.port_id
        return item


@dataclass(frozen=True)
class TakeOffItem:
    """A number that earned at least the asked sum and may be swapped for a new SIM.

    The spec types every field as STRING; real answers mix strings and numbers, so
    :meth:`from_json` accepts both.
    """

    number: str
    id: int
    sum: float
    country: str
    balance: float | None = None

    @classmethod
    def from_json(cls, item: Any) -> TakeOffItem:
        """Parse one element of takeOffNumbers' ``list``; ``ValueError`` if it is malformed."""
        if not isinstance(item, Mapping):
            raise ValueError(f"take-off item is not an object: {item!r}")
        try:
            return cls(
                number=str(item["number"]),
                id=_as_int(item["id"]),
                sum=_as_float(item["sum"]),
                country=str(item.get("country", "")),
                balance=None if item.get("balance") in (None, "") else _as_float(item["balance"]),
            )
        except KeyError as exc:
            raise ValueError(f"take-off item lacks {exc.args[0]!r}: {item!r}") from exc


def _as_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"not an integer: {value!r}")
    return int(value)


def _as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"not a number: {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"not a finite number: {value!r}")
    return number


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date).

    ``None`` when absent or unreadable: a broken header must not break the error path.
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _answer_code(body: str, status: int) -> str | None:
    """The API code an answer carries, from either body form, or ``None``.

    ``_SUCCESS`` stands for success (``response: 1``). A bare text body counts as a code only if
    it looks like one; on a 200 it must also be a code we know, because a captive portal or
    proxy answering 200 with some page must not pass for OnlineSim.
    """
    text = body.strip()
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, Mapping) and "response" in document:
        if _is_success(document):
            return _SUCCESS
        response = document["response"]
        if isinstance(response, str) and response:
            return response
        return None
    if _BARE_CODE.fullmatch(text) and (status != 200 or text in KNOWN_CODES):
        return text
    return None


def _is_success(document: Any) -> bool:
    """Whether a parsed answer is OnlineSim's ``{"response": 1}`` (or ``"1"``)."""
    if not isinstance(document, Mapping):
        return False
    response = document.get("response")
    return response in (1, "1") and not isinstance(response, bool)


def _plain_success(status: int, content: bytes, secret: bytes) -> dict[str, Any] | None:
    """The decoded answer if it is plainly a success, else ``None`` (then
    :func:`raise_for_answer` decides): the common answer read from its bytes, in one parse,
    without building a second response or decoding text. One that echoes the key is never
    plain, so that the redacting path handles it."""
    if not 200 <= status < 300 or (secret and secret in content):
        return None
    try:
        document = json.loads(content)
    except ValueError:
        return None
    return document if _is_success(document) else None


def raise_for_answer(method: str, response: httpx.Response, *, secret: str) -> dict[str, Any]:
    """Return the decoded JSON of a successful answer, or raise the agent's error for it.

    The decision, in order: 5xx and 429 are transient (with Retry-After); a known code
    decides by itself whatever the status (a 200 carrying ``NO_NUMBER`` is a NO_NUMBER);
    401/403/405 without a known code are still account errors; any other 4xx is a
    rejection; a 3xx is a moved API (301/308: configuration) or a captive portal
    (transient); a 2xx with ``response: 1`` succeeds; a 2xx that does not parse is
    transient — the likeliest author is a captive portal or a proxy, not OnlineSim, and
    an SMS not delivered is worse than one delivered twice.
    """
    status = response.status_code
    body = _redact(response.text, secret)
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    code = _answer_code(body, status)
    succeeded = code == _SUCCESS
    if succeeded and 200 <= status < 300:
        return json.loads(body)
    if succeeded:
        code = None  # ``response: 1`` on an error status says nothing about the error.

    def fail(kind: type[UplinkError], what: str, error_code: str) -> UplinkError:
        message = f"{method}: HTTP {status} {what}"
        if kind is UplinkTransient:
            return UplinkTransient(
                message, code=error_code, status=status, body=body, retry_after=retry_after
            )
        return kind(message, code=error_code, status=status, body=body)

    if status >= 500 or status == 429:
        raise fail(UplinkTransient, code or "server busy or failing", code or f"HTTP_{status}")
    if code in ACCOUNT_CODES:
        raise fail(UplinkAccountError, code, code)
    if code == NO_NUMBER:
        raise fail(UplinkNoNumber, code, code)
    if code in REJECT_CODES:
        raise fail(UplinkRejected, code, code)
    if status in (401, 403, 405):
        raise fail(UplinkAccountError, code or "refused", code or f"HTTP_{status}")
    if 400 <= status < 500:
        raise fail(UplinkRejected, code or "rejected", code or f"HTTP_{status}")
    if 300 <= status < 400:
        location = response.headers.get("Location", "")
        kind = UplinkAccountError if status in (301, 308) else UplinkTransient
        raise fail(kind, f"redirected to {location!r}", f"HTTP_{status}")
    if code is not None:
        # A 2xx whose ``response`` is a code we do not know: the server chose to say no.
        raise fail(UplinkRejected, code, code)
    log.warning(
        "%s: HTTP %d answer is not OnlineSim's JSON: %r", method, status, body[:_BODY_PREVIEW]
    )
    raise fail(UplinkTransient, "answer does not parse", "UNPARSEABLE_ANSWER")


@contextlib.contextmanager
def map_errors(method: str, *, secret: str) -> Iterator[None]:
    """Translate httpx's exceptions raised inside the block into ``UplinkTransient``.

    Every ``httpx.TransportError`` (connect refused, DNS failure, timeouts, a reset in
    the middle of an answer, a protocol violation) means the link, not the request, is at
    fault. The code is httpx's class name (``ConnectError``, ``ReadTimeout``...).
    """
    try:
        yield
    except httpx.TransportError as exc:
        kind = type(exc).__name__
        detail = _redact(str(exc), secret) or kind
        raise UplinkTransient(f"{method}: {kind}: {detail}", code=kind) from exc


#: Schemes of proxy the transport speaks (agent.uplink.network); socks5 only with socksio.
PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")
_PROXY_HOST = re.compile(r"[A-Za-z0-9._~-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")


def environment_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``, ``ALL_PROXY``, minus
    ``NO_PROXY``; lower case first, as curl and urllib read them), as httpx's client would
    have taken it (no scheme: ``http://``); None for a direct connection.

    Raises ConfigError naming the variable when its value cannot be a proxy: read once, at
    the start, rather than failing every call later with a puzzling transport error.
    """
    parts = urllib.parse.urlsplit(url)
    if urllib.request.proxy_bypass_environment(parts.hostname or ""):
        return None
    for prefix in (parts.scheme, "all"):
        for name in (f"{prefix}_proxy", f"{prefix.upper()}_PROXY"):
            value = os.environ.get(name, "").strip()
            if value:
                return _checked_proxy(name, value)
    return None


def _checked_proxy(name: str, value: str) -> str:
    def problem(text: str) -> ConfigError:
        return ConfigError("environment", name, f"{value[:200]!r}: {text}")

    if "://" not in value:
        value = f"http://{value}"
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018 -- urllib checks the port when it is read
    except ValueError as exc:
        raise problem(f"not a URL ({exc})") from None
    if parts.scheme not in PROXY_SCHEMES:
        raise problem(f"scheme {parts.scheme!r}; a proxy is one of {', '.join(PROXY_SCHEMES)}")
    address = parts.netloc.rpartition("@")[2]  # without user:password@
    host = address[: address.index("]") + 1] if address.startswith("[") else address
    host = host.partition(":")[0] if not host.startswith("[") else host
    if not host:
        raise problem("no host")
    if not _PROXY_HOST.fullmatch(host):
        raise problem(f"host {host!r} is not a host name or address")
    if parts.scheme.startswith("socks") and importlib.util.find_spec("socksio") is None:
        raise problem("a socks5 proxy needs the socksio package, which is not installed")
    return value


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "<api-key>") if secret else text


class OnlineSimClient:
    """OnlineSim's reseller push API. One instance per agent: it owns a connection pool.

    Use as ``async with OnlineSimClient(settings) as client:`` or call :meth:`aclose`.
    Every method raises only :class:`agent.errors.UplinkError` subclasses; retrying is
    the caller's business (see :mod:`agent.uplink.policy`).
    """

    def __init__(self, settings: UplinkSettings) -> None:
        self._secret = settings.api_key
        self._secret_bytes = settings.api_key.encode()
        self._base_url = settings.base_url.rstrip("/") + "/"
        self._urls: dict[str, httpx.URL] = {}  # by API method: parsed once, not per request
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if settings.api_key:
            # Without a key, send none: OnlineSim then says ERROR_NO_KEY, which names the
            # problem better than a malformed "Bearer " would.
            headers["Authorization"] = f"Bearer {settings.api_key}"
        self._headers = httpx.Headers(headers)
        self._json_headers = httpx.Headers({**headers, "Content-Type": JSON_CONTENT_TYPE})
        self._call_timeout = settings.call_timeout
        self._timeout = httpx.Timeout(
            connect=settings.connect_timeout,
            read=settings.read_timeout,
            write=settings.write_timeout,
            pool=settings.pool_timeout,
        ).as_dict()
        # Requests go straight to the transport (agent.uplink.network): httpx.AsyncClient's
        # own layer (cookie jar, auth flow, redirects, URL merging, event hooks) is none of
        # what this API needs and was 40% of the CPU of a backlog drain; redirects are not
        # followed either way (a moved URL or a captive portal is news for a person, and
        # would turn a POST into a GET).
        self.network = AsyncioBackend()
        self._transport = UplinkTransport(
            ssl_context=httpx.create_ssl_context(),  # certifi's roots, SSL_CERT_FILE honoured
            max_connections=max(1, settings.max_connections),
            backend=self.network,
            proxy=environment_proxy(self._base_url),
        )

    def __repr__(self) -> str:
        return f"OnlineSimClient(base_url={self._base_url.rstrip('/')!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._transport.aclose()

    async def send_numbers_online(
        self, items: list[NumberItem], *, dry_run: bool = False
    ) -> dict[str, int | None]:
        """Report the whole live set; returns OnlineSim's id per number (``None`` = removed).

        ``dry_run`` adds the 2023 spec's ``test=test1``: the server checks the payload
        without applying it.
        """
        payload: dict[str, Any] = {"number": [item.to_json() for item in items]}
        if dry_run:
            payload["test"] = "test1"
        answer = await self._call("POST", "sendNumbersOnline", json_body=payload)
        return parse_ids("sendNumbersOnline", answer)

    async def add_message(
        self,
        *,
        number: str | None = None,
        number_id: int | None = None,
        sender: str,
        text: str,
        date: int,
    ) -> None:
        """Deliver one complete SMS to a number (by ``number`` or by OnlineSim's id)."""
        if (number is None) == (number_id is None):
            raise UplinkRejected(
                f"addMessage: give exactly one of number and number_id, "
                f"got number={number!r} number_id={number_id!r}",
                code="ERROR_PARAMS",
            )
        payload: dict[str, Any] = {"from": sender, "message": text, "date": str(date)}
        if number is not None:
            payload["number"] = number
        else:
            payload["id"] = number_id
        await self._call("POST", "addMessage", json_body=payload)

    async def take_off_numbers(self, *, sum_rub: float, since: int | None) -> list[TakeOffItem]:
        """Numbers that earned at least ``sum_rub`` roubles (since ``since``, unix seconds)."""
        params = {"sum": f"{sum_rub:g}"}
        if since is not None:
            params["date"] = str(since)
        answer = await self._call("GET", "takeOffNumbers", params=params)
        entries = answer.get("list", [])
        if not isinstance(entries, list):
            raise _bad_answer("takeOffNumbers", answer, "'list' is not a list")
        try:
            return [TakeOffItem.from_json(entry) for entry in entries]
        except ValueError as exc:
            raise _bad_answer("takeOffNumbers", answer, str(exc)) from exc

    async def _call(
        self,
        http_method: str,
        api_method: str,
        *,
        json_body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        content = None
        headers = self._headers
        if json_body is not None:
            content = json.dumps(json_body, ensure_ascii=False).encode("utf-8")
            headers = self._json_headers
        url = self._urls.get(api_method)
        if url is None:
            url = self._urls[api_method] = httpx.URL(self._base_url + api_method)
        started = time.monotonic()
        try:
            with map_errors(api_method, secret=self._secret):
                request = httpx.Request(
                    http_method,
                    url,
                    params=params,
                    content=content,
                    headers=headers,
                    extensions={"timeout": self._timeout},
                )
                async with asyncio.timeout(self._call_timeout):
                    streamed = await self._transport.handle_async_request(request)
                    try:
                        content = await _read_bounded(api_method, streamed, secret=self._secret)
                    finally:
                        await streamed.aclose()
        except TimeoutError as exc:
            # Each phase came in time, the whole did not (an answer trickling in).
            raise UplinkTransient(
                f"{api_method}: CallTimeout: no whole answer within {self._call_timeout:g} s",
                code="CallTimeout",
            ) from exc
        status = streamed.status_code
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s: HTTP %d in %.0f ms", api_method, status, (time.monotonic() - started) * 1000
            )
        answer = _plain_success(status, content, self._secret_bytes)
        if answer is not None:
            return answer
        response = httpx.Response(
            status, headers=streamed.headers, content=content, request=request
        )
        return raise_for_answer(api_method, response, secret=self._secret)


async def _read_bounded(method: str, response: httpx.Response, *, secret: str) -> bytes:
    """The body of ``response``, at most :data:`MAX_ANSWER` bytes of it."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_ANSWER:
            start = b"".join(chunks)[:_KEPT_OF_TOO_LARGE].decode("utf-8", "replace")
            raise UplinkTransient(
                f"{method}: AnswerTooLarge: HTTP {response.status_code} answer longer than "
                f"{MAX_ANSWER} bytes",
                code="AnswerTooLarge",
                status=response.status_code,
                body=_redact(start, secret),
            )
    return b"".join(chunks)


def parse_ids(method: str, answer: dict[str, Any]) -> dict[str, int | None]:
    """The ``ids`` of a sendNumbersOnline success: number -> id, ``None`` for removed."""
    ids = answer.get("ids", {})
    # PHP encodes an empty associative array as [], so an empty list means no ids.
    if ids == []:
        return {}
    if not isinstance(ids, Mapping):
        raise _bad_answer(method, answer, "'ids' is not an object")
    try:
        return {
            str(number): None if value is None else _as_int(value) for number, value in ids.items()
        }
    except ValueError as exc:
        raise _bad_answer(method, answer, str(exc)) from exc


def _bad_answer(method: str, answer: Any, problem: str) -> UplinkTransient:
    # A success with a body we cannot read: repeating the call is harmless for both
    # methods that have a body to read (the list is idempotent, take-off is a query).
    return UplinkTransient(
        f"{method}: HTTP 200 answer malformed: {problem}",
        code="MALFORMED_ANSWER",
        status=200,
        body=json.dumps(answer, ensure_ascii=False),
    )
