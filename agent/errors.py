"""The one exception tree of simedge.

Errors of the layers below (serial, httpx, peewee, sqlite3) are translated into this tree
where they enter, in exactly one place each, with ``raise ... from exc``; every error that
comes from outside input keeps that input (``raw``) so that nothing is lost and a person
can see what arrived.

    SimedgeError
    ├── ConfigError                 a configuration file, key and problem
    ├── BlockRuleError              a block rule that cannot be used: rule, field, problem
    ├── ProtocolError               bytes from a modem that do not parse (pure layer)
    │   ├── AtParseError            an AT response line that is not what it claims
    │   └── PduError                an SMS PDU, with the octet offset and field that failed
    ├── ModemError                  a conversation with one modem went wrong
    │   ├── CommandTimeout          no final result code in time
    │   ├── CommandFailed           ERROR / +CME ERROR / +CMS ERROR, with the named code
    │   └── PortGone                the serial device vanished or cannot be opened
    │       └── PortBusy            another program holds the port (who, in ``holder``)
    ├── StoreError                  the SQLite store cannot do what was asked
    │   └── StoreNotWritable        nothing can be written: read-only, I/O error, full
    │   │   └── DiskFull            the data folder is out of space
    │   └── StoreDamaged            the database file is damaged: a person must act
    ├── UplinkError                 a call to OnlineSim did not succeed
    │   ├── UplinkTransient         network error, timeout, 5xx, 429: back off and retry
    │   ├── UplinkAccountError      401/403/405: pause the uplink, alarm, keep everything
    │   ├── UplinkRejected          400 that can never succeed as sent: dead letter
    │   └── UplinkNoNumber          400 NO_NUMBER: resend the numbers list, then retry
    ├── ControlError                a dashboard/CLI request over the control socket failed
    │   └── AgentNotRunning         nobody listens on the socket: the agent is down
    ├── ListenError                 a listener of the agent (the webhook) cannot listen
    ├── AlreadyRunning              another agent holds the data folder (its PID, if known)
    └── EmulatorError               the emulated world was told something it cannot do
"""

from __future__ import annotations


class SimedgeError(Exception):
    """Base of every error simedge raises on purpose."""


class ConfigError(SimedgeError):
    """A configuration problem, named by file and key, e.g. ``a.toml: [webhook] listen: ...``."""

    def __init__(self, file: str, key: str | None, problem: str) -> None:
        self.file = file
        self.key = key
        self.problem = problem
        where = f"{file}: {key}: " if key else f"{file}: "
        super().__init__(where + problem)


class BlockRuleError(SimedgeError):
    """A block rule refused where it is added (configuration, dashboard, control socket,
    CLI), e.g. ``block rule 'spam' text: is not a regular expression: ...``. ``part`` is
    the field at fault ("name", "sender", "text") or None for the rule as a whole."""

    def __init__(self, rule: str, part: str | None, problem: str) -> None:
        self.rule = rule
        self.part = part
        self.problem = problem
        where = f"block rule {rule!r} {part}" if part else f"block rule {rule!r}"
        super().__init__(f"{where}: {problem}")


class ProtocolError(SimedgeError):
    """Input from a modem that does not parse. ``raw`` is the input, kept whole."""

    def __init__(self, message: str, raw: bytes | str = b"") -> None:
        self.raw = raw
        super().__init__(message)


class AtParseError(ProtocolError):
    """An AT information line that does not have the form its prefix promises."""


class PduError(ProtocolError):
    """An SMS PDU that cannot be decoded: says at which octet and in which field."""

    def __init__(
        self, message: str, raw: bytes | str = b"", *, offset: int = 0, field: str = ""
    ) -> None:
        self.offset = offset
        self.field = field
        super().__init__(self.describe(field, offset, message), raw)

    @staticmethod
    def describe(field: str, offset: int, message: str) -> str:
        """How a PDU fault reads, refused or salvaged: "field at octet N: what is wrong"."""
        where = f"{field} at octet {offset}: " if field else f"octet {offset}: "
        return where + message


class ModemError(SimedgeError):
    """A conversation with one modem failed. ``port`` names the serial device."""

    def __init__(self, message: str, port: str = "", raw: bytes | str = b"") -> None:
        self.port = port
        self.raw = raw
        super().__init__(f"{port}: {message}" if port else message)


class CommandTimeout(ModemError):
    """The modem gave no final result code within the command's timeout."""


class CommandFailed(ModemError):
    """The modem answered ERROR, +CME ERROR or +CMS ERROR.

    ``kind`` is "ERROR", "CME" or "CMS"; ``code`` the numeric code when one was given;
    ``name`` the standard's name of the code (e.g. ``SIM_NOT_INSERTED``) or its text.
    """

    def __init__(
        self,
        message: str,
        port: str = "",
        raw: bytes | str = b"",
        *,
        kind: str = "ERROR",
        code: int | None = None,
        name: str = "",
    ) -> None:
        self.kind = kind
        self.code = code
        self.name = name
        super().__init__(message, port, raw)


class PortGone(ModemError):
    """The serial device vanished (unplugged) or cannot be opened."""


class PortBusy(PortGone):
    """Another program holds the serial device (a lock file or an exclusive lock).
    ``holder`` says who, e.g. ``minicom (PID 812)``: the port is skipped, not failed."""

    def __init__(self, message: str, port: str = "", *, holder: str = "") -> None:
        self.holder = holder
        super().__init__(message, port)


class StoreError(SimedgeError):
    """The SQLite store failed to do what was asked."""


class StoreNotWritable(StoreError):
    """The store cannot write at all (a read-only file system or file, an I/O error, a
    full disk), as opposed to one request it cannot do: whoever waits for a write to be
    durable (the modems, the outbox pump) holds back until a write succeeds again."""


class DiskFull(StoreNotWritable):
    """The data folder has no space left: stop taking SMS off the modems until it has."""


class StoreDamaged(StoreError):
    """The database file is damaged (0 bytes, not a database, a corrupt page). Restarting
    cannot fix it: the message names the file, what is wrong and the way out
    (``simedge db check``, ``simedge db recover``)."""


class UplinkError(SimedgeError):
    """A call to OnlineSim failed. ``code`` is the API's code (e.g. ``NO_NUMBER``) or an
    HTTP/network description; ``status`` the HTTP status when there was one; ``body`` the
    raw answer, kept for the dead letter and the dashboard."""

    def __init__(
        self, message: str, *, code: str = "", status: int | None = None, body: str = ""
    ) -> None:
        self.code = code
        self.status = status
        self.body = body
        super().__init__(message)


class UplinkTransient(UplinkError):
    """Network error, timeout, 5xx or 429: the link is flaky; back off and retry.

    ``retry_after`` is the server's own Retry-After in seconds (429/503) when it sent one:
    the retry policy waits at least that long, because the server knows its load better."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        status: int | None = None,
        body: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, code=code, status=status, body=body)


class UplinkAccountError(UplinkError):
    """401/403/405: the key, account or URL is wrong; a person must act. Pause, keep all."""


class UplinkRejected(UplinkError):
    """400 NUMBER_FORMAT_ERROR / ERROR_PARAMS / ERROR_DATE: this request can never
    succeed as it is; keep it as a dead letter with the reason."""


class UplinkNoNumber(UplinkError):
    """400 NO_NUMBER: OnlineSim does not have the number online; resend the list."""


class ControlError(SimedgeError):
    """A request over the control socket failed (agent down, bad request, refused)."""


class AgentNotRunning(ControlError):
    """No agent on the control socket (no socket file, or nobody listening on it)."""


class ListenError(SimedgeError):
    """A listener of the agent (the webhook) cannot listen: the address is in use, not
    ours, or does not resolve. ``address`` is ``host:port`` as configured."""

    def __init__(self, message: str, address: str) -> None:
        self.address = address
        super().__init__(f"{address}: {message}")


class AlreadyRunning(SimedgeError):
    """Another agent holds the data folder's lock. ``pid`` is the PID it wrote into the
    lock file (None when it could not be read)."""

    def __init__(self, data_dir: str, pid: int | None) -> None:
        self.data_dir = data_dir
        self.pid = pid
        who = f"PID {pid}" if pid is not None else "a process whose PID could not be read"
        super().__init__(
            f"{data_dir}: another simedge agent ({who}) is already running on this data folder;"
            " stop it first (one agent per data folder)"
        )


class EmulatorError(SimedgeError):
    """An emulator (OnlineSim stand-in, modem hub) was given a setting it cannot apply, e.g.
    a fault rate above 1. ``setting`` names it; ``raw`` is the value as given."""

    def __init__(self, message: str, setting: str = "", raw: object = None) -> None:
        self.setting = setting
        self.raw = raw
        super().__init__(f"{setting}: {message}" if setting else message)
