"""Numbers online: the list of live numbers sent to sendNumbersOnline.

A number is *live* when its modem is ready, its SIM ready and registered, and its own
number known. The whole list goes up at start, after every change of the live set, and
at least every ``heartbeat`` seconds (OnlineSim's 2023 spec wants one every 5 minutes as
proof that the site is up). Changes are throttled, not delayed: the first change after a
quiet spell goes up at once (removals promptly, as reporting a number that is not live
gets the account's numbers blocked for 30 minutes); further changes within ``debounce``
seconds of a list are folded into one list at the end of that window, so a flapping port
sends at most one list per window. Every list is built from the live set at the moment it
is sent, so no list holds a number that is not live then.

Numbers are sent in E.164. A SIM's number is often known in national form ("8916..."
from a USSD answer): it is parsed with phonenumbers in the SIM's home region, found from
the IMSI's MCC through :data:`MCC_REGIONS` (phonenumbers has no MCC table). A number that
is not even *possible* is flagged on the SIM (``invalid_number_reason``) and never sent;
one that phonenumbers' metadata calls *invalid* is sent with a warning flag, because
operators open new ranges before the metadata knows them.

Each item: ``number``, ``country_id`` (the calling code), ``date_start`` (when the number
came online, persisted on the SIM so a restart keeps it), ``operator`` (MCC+MNC),
``port_id`` (the slot's label or stable USB path). The ids OnlineSim answers are stored
on the SIM rows (``onlinesim_id``) for the dashboard; the pump addresses addMessage by
number (see :mod:`agent.uplink.pump` for why).

"Online" means what OnlineSim was told and accepted: the count and time of the last list
it answered 1 to (:attr:`NumbersSync.accepted`, kept as the ``numbers_online`` site fact
after each list, heartbeats included, so a restart and the readers of the database
agree). The dashboard, ``simedge status`` and the ``simedge_sims_online`` gauge show that,
not the SIMs that look ready here: with a wrong key every SIM is ready and none is online.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import phonenumbers

from agent.errors import (
    StoreError,
    StoreNotWritable,
    UplinkAccountError,
    UplinkError,
    UplinkTransient,
)
from agent.logs import get_logger
from agent.modem.balance import is_fresh
from agent.status import (
    FACT_NUMBERS_ONLINE,
    ModemState,
    ModemStatus,
    NumbersOnline,
    SimState,
    UplinkCondition,
    from_json,
)
from agent.store import Store
from agent.store.facts import read_fact
from agent.store.models import Sim
from agent.uplink.client import NumberItem, OnlineSimClient
from agent.uplink.policy import RetryPolicy, account_probe, next_delay, transient_backoff
from agent.uplink.state import UplinkSnapshot, UplinkTracker
from agent.uplink.takeoff import TakeOffMarks

if TYPE_CHECKING:
    from agent.webhook.metrics import Metrics

log = get_logger("uplink.numbers")

#: sendNumbersOnline at least this often, whatever is configured (2023 spec: 5 minutes).
MAX_HEARTBEAT = 300.0
_PORT_ID_MAX = 100

#: MCC -> ISO 3166 region, for the home region of a SIM from its IMSI. Source: ITU-T
#: E.212 "Mobile network codes" list (annex to the ITU Operational Bulletin), as tabulated
#: in Wikipedia's "Mobile country code" article; the countries where OnlineSim resellers
#: and their SIMs are found, plus the large markets. An MCC not here leaves national
#: numbers unparseable (flagged), never guessed.
MCC_REGIONS: dict[str, str] = {
    "202": "GR", "204": "NL", "206": "BE", "208": "FR", "214": "ES", "216": "HU",
    "218": "BA", "219": "HR", "220": "RS", "222": "IT", "226": "RO", "228": "CH",
    "230": "CZ", "231": "SK", "232": "AT", "234": "GB", "235": "GB", "238": "DK",
    "240": "SE", "242": "NO", "244": "FI", "246": "LT", "247": "LV", "248": "EE",
    "250": "RU", "255": "UA", "257": "BY", "259": "MD", "260": "PL", "262": "DE",
    "268": "PT", "270": "LU", "272": "IE", "274": "IS", "276": "AL", "278": "MT",
    "280": "CY", "282": "GE", "283": "AM", "284": "BG", "286": "TR", "293": "SI",
    "294": "MK", "297": "ME", "302": "CA", "310": "US", "311": "US", "312": "US",
    "313": "US", "314": "US", "315": "US", "316": "US", "334": "MX", "400": "AZ",
    "401": "KZ", "404": "IN", "405": "IN", "406": "IN", "410": "PK", "412": "AF",
    "413": "LK", "414": "MM", "415": "LB", "416": "JO", "417": "SY", "418": "IQ",
    "419": "KW", "420": "SA", "421": "YE", "422": "OM", "424": "AE", "425": "IL",
    "426": "BH", "427": "QA", "428": "MN", "429": "NP", "432": "IR", "434": "UZ",
    "436": "TJ", "437": "KG", "438": "TM", "440": "JP", "441": "JP", "450": "KR",
    "452": "VN", "454": "HK", "455": "MO", "456": "KH", "457": "LA", "460": "CN",
    "466": "TW", "470": "BD", "502": "MY", "505": "AU", "510": "ID", "515": "PH",
    "520": "TH", "525": "SG", "530": "NZ", "602": "EG", "603": "DZ", "604": "MA",
    "605": "TN", "620": "GH", "621": "NG", "639": "KE", "640": "TZ", "641": "UG",
    "655": "ZA", "716": "PE", "722": "AR", "724": "BR", "730": "CL", "732": "CO",
    "734": "VE", "740": "EC", "744": "PY", "748": "UY",
}  # fmt: skip

#: MCCs whose networks use 3-digit MNCs (E.212): the operator is 6 IMSI digits there.
_THREE_DIGIT_MNC = frozenset({"302", "310", "311", "312", "313", "314", "315", "316", "334",
                              "405", "722", "732"})  # fmt: skip


@dataclass(frozen=True)
class NumberCheck:
    """What phonenumbers makes of a SIM's own number.

    ``e164`` is ``None`` when the number is not even possible (``problem`` says why);
    ``warning`` is set when it is possible but the metadata calls it invalid.
    """

    e164: str | None
    country_id: int | None = None
    problem: str | None = None
    warning: str | None = None


def region_of_imsi(imsi: str | None) -> str | None:
    """The SIM's home region (ISO 3166) from the IMSI's MCC, or ``None`` when unknown."""
    if not imsi or len(imsi) < 3 or not imsi[:3].isdigit():
        return None
    return MCC_REGIONS.get(imsi[:3])


def operator_of(status: ModemStatus) -> str | None:
    """MCC+MNC: the modem's reading when it is digits, else the IMSI's first 5 or 6."""
    if status.operator and status.operator.isdigit() and len(status.operator) in (5, 6):
        return status.operator
    imsi = status.imsi
    if imsi and imsi.isdigit() and len(imsi) >= 6:
        return imsi[:6] if imsi[:3] in _THREE_DIGIT_MNC else imsi[:5]
    return None


# The list is built again after every change of a modem's status; parsing every number
# with phonenumbers each time was a sixth of an idle agent's CPU.
@functools.lru_cache(maxsize=1024)
def check_number(number: str, imsi: str | None) -> NumberCheck:
    """Parse a SIM's own number, national or international, into E.164 (see module doc)."""
    region = region_of_imsi(imsi)
    text = number.strip()
    try:
        parsed = phonenumbers.parse(text, None if text.startswith("+") else region)
    except phonenumbers.NumberParseException as exc:
        where = f"home region {region}" if region else "no home region known from the IMSI"
        return NumberCheck(None, problem=f"{number!r} does not parse ({where}): {exc}")
    if not phonenumbers.is_possible_number(parsed):
        return NumberCheck(None, problem=f"{number!r} is not a possible phone number")
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    warning = None
    if not phonenumbers.is_valid_number(parsed):
        warning = f"{e164} is not valid in phonenumbers' metadata; sent anyway (new range?)"
    return NumberCheck(e164, country_id=parsed.country_code, warning=warning)


def e164_or_raw(number: str, imsi: str | None) -> str:
    """The number for addMessage: E.164 when possible, else as stored, for OnlineSim to
    judge (NUMBER_FORMAT_ERROR then makes a dead letter a person can fix and resend)."""
    return check_number(number, imsi).e164 or number.strip()


def is_live(status: ModemStatus) -> bool:
    """Ready modem, ready and registered SIM, known number: OnlineSim may list it."""
    return (
        status.state is ModemState.READY
        and status.sim_state is SimState.READY
        and status.registered
        and bool(status.iccid)
        and bool(status.number)
    )


def list_fields(status: ModemStatus) -> tuple[object, ...]:
    """What of a ModemStatus the numbers list is built from (is_live, the number and its
    checks, operator, port id): a change elsewhere (signal, storage) cannot change the list."""
    return (
        status.slot,
        status.label,
        status.state,
        status.sim_state,
        status.registered,
        status.iccid,
        status.imsi,
        status.number,
        status.operator,
        status.balance,
        status.balance_at,
    )


def port_id_of(status: ModemStatus) -> str:
    """The slot's label if it has one, else its stable USB path, cut to the API's 100
    characters from the left: the end of a by-path name is the part that differs."""
    name = status.label or status.slot
    return name[-_PORT_ID_MAX:]


@dataclass(frozen=True)
class _Built:
    items: list[NumberItem]
    holders: dict[str, tuple[str, str | None]]  # E.164 -> (ICCID, slot)
    flags: dict[str, str]  # ICCID -> invalid_number_reason


class NumbersSync:
    """Keeps OnlineSim's online list equal to the live numbers. Run :meth:`run` as a task.

    ``live`` returns the current ModemStatus snapshots (cheap, in memory); the modem side
    calls :meth:`notify_change` on any change of one. ``marks`` and ``takeoff_offline``
    make SIMs marked for take-off leave the list (the marks are loaded by their owner, the
    agent). ``clock`` gives ``date_start`` values and the age of a SIM's balance: it goes in
    the SIM's item while it is at most ``balance_fresh`` seconds old (docs/upkeep.md).
    """

    def __init__(
        self,
        client: OnlineSimClient,
        store: Store,
        live: Callable[[], Iterable[ModemStatus]],
        *,
        policy: RetryPolicy | None = None,
        probe: RetryPolicy | None = None,
        debounce: float = 5.0,
        heartbeat: float = 240.0,
        clock: Callable[[], float] = time.time,
        state: UplinkTracker | None = None,
        metrics: Metrics | None = None,
        marks: TakeOffMarks | None = None,
        takeoff_offline: bool = True,
        start_grace: float = 30.0,
        balance_fresh: float = 172800.0,
    ) -> None:
        self._client = client
        self._store = store
        self._live = live
        self._policy = policy or transient_backoff()
        self._probe = probe or account_probe()
        self._debounce = debounce
        self._heartbeat = min(heartbeat, MAX_HEARTBEAT)
        self._clock = clock
        self._state = state or UplinkTracker(clock)
        self._metrics = metrics
        self._marks = marks
        self._takeoff_offline = takeoff_offline
        self._start_grace = start_grace
        self._balance_fresh = balance_fresh
        # Set while a list is held back after the start (numbers not back yet).
        self.holding_back = asyncio.Event()
        self._online_since: dict[str, int] = {}  # ICCID -> date_start, in memory
        self._persisted_since: dict[str, int] = {}
        self._flags: dict[str, str] = {}  # as persisted
        self._sent_holders: dict[str, tuple[str, str | None]] = {}
        self._wake = asyncio.Event()
        self._changed = True  # the start counts as a change
        self._forced = False
        self._requested = 0  # resync generations asked for ...
        self._sent_generation = 0  # ... and the newest one a successful list covered
        self._sent = asyncio.Condition()
        self._lists_sent = 0
        self._last_items: list[NumberItem] | None = None  # as OnlineSim accepted them
        # A failed list waits on its back-off for the link or the account (not for a
        # refusal of the list itself): any success elsewhere sends it at once.
        self._held_by_link = False
        self._accepted: NumbersOnline | None = None  # persisted as a site fact

    # --- for the modem side, the pump and the webhook -------------------------------------

    def notify_change(self) -> None:
        """A ModemStatus changed: send a new list (throttled to one per ``debounce``)."""
        self._changed = True
        self._wake.set()

    def force(self) -> None:
        """Send a new list now, whatever the throttle (addMessage answered NO_NUMBER)."""
        self._requested += 1
        self._forced = True
        self._wake.set()

    async def resync(self) -> None:
        """:meth:`force`, then wait until a list built after this call went up."""
        self.force()
        target = self._requested
        async with self._sent:
            await self._sent.wait_for(lambda: self._sent_generation >= target)

    def current_items(self) -> list[dict[str, Any]]:
        """The live numbers now, in the sendNumbersOnline item format (the webhook's list)."""
        return [item.to_json() for item in self._build(list(self._live())).items]

    def holders(self) -> dict[str, tuple[str, str | None]]:
        """E.164 -> (ICCID, slot) of the numbers in the last list OnlineSim accepted."""
        return dict(self._sent_holders)

    @property
    def lists_sent(self) -> int:
        return self._lists_sent

    @property
    def accepted(self) -> NumbersOnline | None:
        """The last list OnlineSim accepted (this run's, or the one before the restart):
        what "SIMs online" means everywhere. None until one was accepted."""
        return self._accepted

    # --- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """Send lists until cancelled: at start, on change (throttled), on heartbeat.

        After a failure the list waits on the back-off, with two exceptions that do not
        wait (docs/uplink.md): a NO_NUMBER resync (:meth:`force`) goes at once, and when
        any other call to OnlineSim succeeds (the link is back) the list goes at once."""
        await self._load()
        loop = asyncio.get_running_loop()
        last_sent = -float("inf")
        retry_at: float | None = None
        failures = 0
        remove_listener = self._state.on_change(self._uplink_changed)
        try:
            await self._loop(loop, last_sent, retry_at, failures)
        finally:
            remove_listener()

    def _uplink_changed(self, snapshot: UplinkSnapshot) -> None:
        # Only while a failed list waits for the link: every upload is a change of state.
        if self._held_by_link and snapshot.condition is UplinkCondition.OK:
            self._wake.set()  # a list held back by the link's back-off may go now

    async def _loop(
        self,
        loop: asyncio.AbstractEventLoop,
        last_sent: float,
        retry_at: float | None,
        failures: int,
    ) -> None:
        # The numbers online when the agent last stopped: for a while after the start,
        # a list without some of them is held back, since their modems are most likely
        # still being found; sent at once, it would take them offline at OnlineSim and
        # every SMS for them would meet NO_NUMBER until they are back.
        expected = set(self._persisted_since)
        grace_end = loop.time() + self._start_grace
        while True:
            now = loop.time()
            if expected and (now >= grace_end or expected <= self._live_iccids()):
                expected = set()
            if self._forced:
                deadline = now  # NO_NUMBER: honoured at once, even while backing off
            elif retry_at is not None:
                link_back = self._held_by_link and not (self._state.link_down or self._state.paused)
                deadline = now if link_back else retry_at
            elif expected:
                if not self.holding_back.is_set():
                    log.info(
                        "numbers: %d of the %d numbers online at the last stop are not back "
                        "yet; holding the list back for up to %.0f s",
                        len(expected - self._live_iccids()),
                        len(expected),
                        grace_end - now,
                    )
                    self.holding_back.set()
                deadline = grace_end
            elif self._changed:
                deadline = last_sent + self._debounce
            else:
                deadline = last_sent + self._heartbeat
            if deadline > now:
                self._wake.clear()
                try:
                    async with asyncio.timeout(deadline - now):
                        await self._wake.wait()
                    continue  # something changed: work out the deadline again
                except TimeoutError:
                    pass
            # A change of a modem's signal or health is a change for the dashboard, not
            # for OnlineSim: an unchanged list waits for the heartbeat.
            must_send = self._forced or retry_at is not None or now >= last_sent + self._heartbeat
            successes_seen = self._state.successes
            try:
                sent = await self._send_list(only_if_changed=not must_send)
            except UplinkError as error:
                failures += 1
                self._held_by_link = isinstance(error, UplinkTransient | UplinkAccountError)
                retry_at = loop.time() + await self._failed(error, failures, successes_seen)
            except StoreNotWritable as error:
                # The list may have gone up; what it changed on the SIM rows could not be
                # written. Sent again after the back-off (the list is idempotent).
                failures += 1
                self._held_by_link = False
                delay = next_delay(failures, self._policy)
                log.error("numbers: %s; sending the list again in %.1f s", error, delay)
                retry_at = loop.time() + delay
            else:
                failures = 0
                retry_at = None
                self._held_by_link = False
                if sent:
                    last_sent = loop.time()

    async def _send_list(self, *, only_if_changed: bool = False) -> bool:
        """Send the list of live numbers; False when ``only_if_changed`` and it is the list
        OnlineSim already has."""
        generation = self._requested
        self._changed = self._forced = False
        statuses = list(self._live())
        if self._marks is not None:
            await self._marks.settle(statuses)
        built = self._build(statuses)
        await self._record_flags(built.flags)
        if only_if_changed and built.items == self._last_items:
            return False
        try:
            ids = await self._client.send_numbers_online(built.items)
        except UplinkError:
            self._changed = True  # whatever was to go up still must
            raise
        self._state.succeeded()
        self._lists_sent += 1
        self._set_accepted(NumbersOnline(count=len(built.items), accepted_at=self._clock()))
        await self._record_sent(built, ids)
        await self._record_accepted()
        self._sent_generation = max(self._sent_generation, generation)
        async with self._sent:
            self._sent.notify_all()
        self._last_items = built.items
        log.info("numbers online: %d sent (%d id changes)", len(built.items), len(ids))
        return True

    async def _failed(self, error: UplinkError, failures: int, successes_seen: int) -> float:
        if self._metrics is not None:
            self._metrics.uplink_error(error.code or type(error).__name__)
        if isinstance(error, UplinkAccountError):
            if self._state.pause(error):
                await self._store.log_event(
                    "uplink_paused",
                    f"OnlineSim refused the numbers list: {error.code}; a person must fix the "
                    "key, account or URL. Probing slowly.",
                    level="alarm",
                )
            policy = self._probe
        else:
            if isinstance(error, UplinkTransient):
                if not self._state.backing_off(error, successes_seen=successes_seen):
                    # Another call succeeded while this one was out: the link is up.
                    log.info("sendNumbersOnline failed (%s) as the link came back", error.code)
                    return 0.0
            else:
                # The whole list was refused: nothing is online until it is fixed.
                await self._store.log_event(
                    "numbers_refused",
                    f"sendNumbersOnline refused the list: {error} (answer {error.body!r})",
                    level="error",
                )
            policy = self._policy
        delay = next_delay(failures, policy, error=error)
        log.warning("sendNumbersOnline failed (%s); next try in %.1f s", error.code, delay)
        return delay

    def _live_iccids(self) -> set[str]:
        return {iccid for iccid, _slot in self._build(list(self._live())).holders.values()}

    # --- building the list ----------------------------------------------------------------

    def _build(self, statuses: list[ModemStatus]) -> _Built:
        clock_now = self._clock()  # not rounded: a balance read this second is fresh
        now = int(clock_now)
        items: list[NumberItem] = []
        holders: dict[str, tuple[str, str | None]] = {}
        flags: dict[str, str] = {}
        live_iccids: set[str] = set()
        for status in statuses:
            if not is_live(status) or status.iccid is None or status.number is None:
                continue
            iccid = status.iccid
            if self._takeoff_offline and self._marks is not None and self._marks.is_marked(iccid):
                continue
            check = check_number(status.number, status.imsi)
            if check.e164 is None or check.country_id is None:
                flags[iccid] = f"not sent: {check.problem}"
                continue
            if check.e164 in holders:
                flags[iccid] = f"not sent: {check.e164} is also the number of another SIM"
                continue
            if check.warning:
                flags[iccid] = check.warning
            live_iccids.add(iccid)
            since = self._online_since.setdefault(iccid, now)
            items.append(
                NumberItem(
                    number=check.e164,
                    country_id=check.country_id,
                    date_start=since,
                    operator=operator_of(status),
                    balance=(
                        status.balance
                        if is_fresh(status.balance_at, clock_now, self._balance_fresh)
                        else None
                    ),
                    port_id=port_id_of(status),
                )
            )
            holders[check.e164] = (iccid, status.slot)
        for iccid in set(self._online_since) - live_iccids:
            del self._online_since[iccid]  # it came back later: a new date_start
        return _Built(items, holders, flags)

    # --- persistence (SIM rows, through the store's single writer) ------------------------

    def _set_accepted(self, accepted: NumbersOnline) -> None:
        self._accepted = accepted
        if self._metrics is not None:
            self._metrics.set_sims_online(accepted.count)

    async def _load(self) -> None:
        earlier = read_fact(FACT_NUMBERS_ONLINE)
        if earlier is not None:
            try:
                self._set_accepted(from_json(NumbersOnline, earlier, where="numbers_online"))
            except ValueError as exc:
                log.warning("%s; the last accepted numbers list is unknown", exc)
        rows = Sim.select(Sim.iccid, Sim.online_since, Sim.invalid_number_reason).where(
            Sim.online_since.is_null(False) | Sim.invalid_number_reason.is_null(False)
        )
        for row in rows:
            if row.online_since is not None:
                since = int(row.online_since.timestamp())
                self._online_since[row.iccid] = self._persisted_since[row.iccid] = since
            if row.invalid_number_reason is not None:
                self._flags[row.iccid] = row.invalid_number_reason

    async def _record_flags(self, flags: dict[str, str]) -> None:
        # Only SIMs live now are judged; one not live keeps its flag until it is seen again.
        changed = {
            iccid: reason for iccid, reason in flags.items() if self._flags.get(iccid) != reason
        }
        if not changed:
            return

        def job() -> None:
            for iccid, reason in changed.items():
                Sim.update(invalid_number_reason=reason).where(Sim.iccid == iccid).execute()

        await self._store.writer.submit(job, "flag SIM numbers")
        for iccid, reason in changed.items():
            log.warning("SIM %s: %s", iccid, reason)
            await self._store.log_event("number_flagged", reason, level="warning", iccid=iccid)
        self._flags.update(changed)

    async def _record_accepted(self) -> None:
        # Every accepted list, heartbeats too: the time says how fresh "online" is. A full
        # disk must not stop the lists (OnlineSim's proof of life): the fact then lags.
        assert self._accepted is not None
        try:
            await self._store.record_fact(FACT_NUMBERS_ONLINE, asdict(self._accepted))
        except StoreError as exc:
            log.warning("the accepted numbers list was not saved: %s", exc)

    async def _record_sent(self, built: _Built, ids: dict[str, int | None]) -> None:
        previous = self._sent_holders
        self._sent_holders = built.holders
        id_updates: dict[str, int | None] = {}
        for number, number_id in ids.items():
            holder = built.holders.get(number) or previous.get(number)
            if holder is not None:
                id_updates[holder[0]] = number_id
        since_updates = {
            iccid: since
            for iccid, since in self._online_since.items()
            if self._persisted_since.get(iccid) != since
        }
        gone = set(self._persisted_since) - set(self._online_since)
        cleared = [
            iccid
            for iccid in self._flags
            if iccid in {holder[0] for holder in built.holders.values()}
            and iccid not in built.flags
        ]
        if not (id_updates or since_updates or gone or cleared):
            return

        def job() -> None:
            for iccid, number_id in id_updates.items():
                Sim.update(onlinesim_id=number_id).where(Sim.iccid == iccid).execute()
            for iccid, since in since_updates.items():
                moment = datetime.fromtimestamp(since, UTC)
                Sim.update(online_since=moment).where(Sim.iccid == iccid).execute()
            if gone:
                Sim.update(online_since=None, onlinesim_id=None).where(
                    Sim.iccid.in_(sorted(gone))
                ).execute()
            if cleared:
                Sim.update(invalid_number_reason=None).where(Sim.iccid.in_(cleared)).execute()

        await self._store.writer.submit(job, "record the numbers online")
        self._persisted_since = dict(self._online_since)
        for iccid in cleared:
            del self._flags[iccid]
