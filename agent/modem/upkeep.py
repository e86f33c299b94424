"""A SIM's upkeep: its balance asked by USSD on a schedule and on demand, and the
keep-alive action before its network's deadline.

One :class:`SimUpkeep` serves the whole site; each modem's worker calls :meth:`check`
from its owner task (an inbox item like any other), so a USSD question or a keep-alive
SMS never runs while an SMS is being read, and the worker re-arms its upkeep timer with
the delay the check returns: at most ``check_every`` (an hour), so a wall clock that
jumped, or a simulated one in tests, is looked at again soon.

What was asked and answered is kept by the :class:`UpkeepLedger` (the store, in the
agent: tables ``sim_balance`` and ``sim_keepalive``), so the schedule survives restarts
and swaps: it follows the ICCID, not the slot.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from agent.config import SimsConfig
from agent.errors import CommandFailed, CommandTimeout
from agent.logs import get_logger
from agent.modem import balance as balances
from agent.modem import keepalive, sending, ussd
from agent.modem.balance import Balance, BalanceRecipe, UnreadableAnswer
from agent.modem.keepalive import KeepalivePolicy
from agent.modem.session import AtSession
from agent.modem.startup import SimIdentity
from agent.modem.vendors import VendorProfile
from agent.status import BalanceAnswer, KeepaliveAction

if TYPE_CHECKING:  # the store (peewee) loads only when a StoreUpkeepLedger is used
    from agent.store import Store

log = get_logger("modem.upkeep")


@dataclass(frozen=True)
class SimHistory:
    """What the ledger knows of one SIM (unix times; None: never)."""

    first_seen: float | None = None
    balance_asked_at: float | None = None  # the newest question, answered or not
    balance: Balance | None = None  # the newest amount read ...
    balance_at: float | None = None  # ... and when
    keepalive_at: float | None = None  # the newest keep-alive that worked
    keepalive_tried_at: float | None = None  # the newest attempt, worked or not


class UpkeepLedger(Protocol):
    async def history(self, iccid: str) -> SimHistory: ...

    async def record_balance(self, row: BalanceAnswer) -> None: ...

    async def record_keepalive(self, row: KeepaliveAction) -> None: ...


@dataclass(frozen=True)
class UpkeepView:
    """What the worker publishes after a check, and when to check again (seconds)."""

    balance: Balance | None
    balance_at: float | None
    active_until: float | None
    next_check: float


class SimUpkeep:
    """Balance and keep-alive for every SIM of the site; see the module docstring."""

    def __init__(
        self,
        ledger: UpkeepLedger,
        *,
        balance_recipes: Mapping[str, BalanceRecipe],
        keepalive_policies: Mapping[str, KeepalivePolicy],
        balance_interval: float = 86400.0,
        check_every: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ledger = ledger
        self.balance_recipes = dict(balance_recipes)
        self.keepalive_policies = dict(keepalive_policies)
        self.balance_interval = balance_interval
        self.check_every = check_every
        self.clock = clock
        self._first_checked: dict[str, float] = {}  # ICCID -> time; one entry per SIM seen

    @classmethod
    def from_config(
        cls,
        config: SimsConfig,
        ledger: UpkeepLedger,
        *,
        check_every: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> SimUpkeep:
        return cls(
            ledger,
            balance_recipes=balances.recipes(config.balance),
            keepalive_policies={
                network: KeepalivePolicy(policy.days, policy.ussd, policy.sms_to, policy.sms_text)
                for network, policy in config.keepalive.items()
            },
            balance_interval=config.balance_interval,
            check_every=check_every,
            clock=clock,
        )

    async def check(
        self,
        session: AtSession,
        sim: SimIdentity,
        *,
        slot: str,
        vendor: VendorProfile,
        answers: ussd.Answers,
        answer_within: float,
        registered: bool = True,
        balance_now: bool = False,
    ) -> UpkeepView:
        """Do what is due for ``sim`` (the balance when ``balance_now``, whatever the
        schedule), record it, and say what to show and when to look again. Nothing is
        dialled while the SIM is not ``registered`` (the network would refuse it)."""
        history = await self.ledger.history(sim.iccid)
        network = sim.operator or ""
        recipe = self.balance_recipes.get(network)
        policy = self.keepalive_policies.get(network)
        # A SIM the ledger has no row for yet (its row is written beside this check): the
        # first check's time, kept, or every check would move its deadline on.
        first_seen = history.first_seen or self._first_checked.setdefault(sim.iccid, self.clock())

        async def ask(code: str) -> ussd.UssdAnswer:
            return await ussd.ask(
                session,
                code,
                vendor,
                answers,
                answer_within=answer_within,
            )

        if (
            registered
            and policy is not None
            and self.clock() >= self._keepalive_due(policy, history, first_seen)
        ):
            history = await self._keep_alive(session, ask, sim, policy, history, slot)
        if recipe is None:
            if balance_now:
                log.info("%s: no balance USSD recipe for network %s", slot, network or "?")
        elif registered and (balance_now or self.clock() >= self._balance_due(sim, history)):
            history = await self._ask_balance(ask, sim, recipe, history, slot)

        next_times = [] if recipe is None else [self._balance_due(sim, history)]
        active_until = None
        if policy is not None:
            active_until = keepalive.active_until(policy, history.keepalive_at, first_seen)
            next_times.append(self._keepalive_due(policy, history, first_seen))
        now = self.clock()
        wait = min([self.check_every, *(max(0.0, t - now) for t in next_times)])
        # At least a second: a time just past (a clock running slow) never spins the worker.
        return UpkeepView(history.balance, history.balance_at, active_until, max(wait, 1.0))

    def _balance_due(self, sim: SimIdentity, history: SimHistory) -> float:
        """At the SIM's moment after its last amount; a question that failed since is
        asked again after ``check_every``, not a day later, nor at every check."""
        asked = history.balance_asked_at
        if asked is not None and (history.balance_at is None or asked > history.balance_at):
            return asked + self.check_every
        return balances.next_due(sim.iccid, history.balance_at, self.balance_interval)

    def _keepalive_due(
        self, policy: KeepalivePolicy, history: SimHistory, first_seen: float
    ) -> float:
        """Before the deadline; a failed attempt is tried again after ``check_every``."""
        due = keepalive.due_at(policy, history.keepalive_at, first_seen)
        tried = history.keepalive_tried_at
        if tried is not None and (history.keepalive_at is None or tried > history.keepalive_at):
            due = max(due, tried + self.check_every)
        return due

    async def _keep_alive(
        self,
        session: AtSession,
        ask: Callable[[str], Awaitable[ussd.UssdAnswer]],
        sim: SimIdentity,
        policy: KeepalivePolicy,
        history: SimHistory,
        slot: str,
    ) -> SimHistory:
        answer: str | None
        error: str | None
        if policy.ussd is not None:
            asked = await ask(policy.ussd)
            answer, error = asked.text or asked.raw, asked.error
        else:
            assert policy.sms_to is not None
            try:
                reference = await sending.send_sms(session, policy.sms_to, policy.sms_text)
            except (CommandFailed, CommandTimeout) as exc:
                answer, error = None, sending.failure_reason(exc)
            else:
                answer, error = f"+CMGS: {reference}", None
        now = self.clock()
        await self.ledger.record_keepalive(
            KeepaliveAction(sim.iccid, now, slot, policy.action, answer, error)
        )
        if error is not None:
            log.warning("%s: keep-alive %s failed: %s", slot, policy.action, error)
            return replace(history, keepalive_tried_at=now)
        log.info("%s: keep-alive %s done for SIM %s", slot, policy.action, sim.iccid)
        return replace(history, keepalive_tried_at=now, keepalive_at=now)

    async def _ask_balance(
        self,
        ask: Callable[[str], Awaitable[ussd.UssdAnswer]],
        sim: SimIdentity,
        recipe: BalanceRecipe,
        history: SimHistory,
        slot: str,
    ) -> SimHistory:
        answer = await ask(recipe.code)
        now = self.clock()
        read: Balance | None = None
        error = answer.error
        if answer.text is not None:
            try:
                read = balances.read_balance(answer.text, recipe)
            except UnreadableAnswer as exc:
                error = str(exc)
        await self.ledger.record_balance(
            BalanceAnswer(
                sim.iccid,
                now,
                slot,
                recipe.code,
                read.amount if read else None,
                read.currency if read else None,
                answer.text or answer.raw,
                error,
            )
        )
        if read is None:
            log.warning("%s: balance %s of SIM %s: %s", slot, recipe.code, sim.iccid, error)
            return replace(history, balance_asked_at=now)
        log.info("%s: balance of SIM %s: %g %s", slot, sim.iccid, read.amount, read.currency)
        return replace(history, balance_asked_at=now, balance=read, balance_at=now)


class StoreUpkeepLedger:
    """The store as an UpkeepLedger (tables sim_balance, sim_keepalive; the sim row)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def history(self, iccid: str) -> SimHistory:
        from agent.store.models import Sim, SimBalance, SimKeepalive

        def lookup() -> SimHistory:
            sim = Sim.get_or_none(Sim.iccid == iccid)
            asked = (
                SimBalance.select().where(SimBalance.iccid == iccid).order_by(SimBalance.at.desc())
            ).first()
            read = (
                SimBalance.select()
                .where((SimBalance.iccid == iccid) & SimBalance.amount.is_null(False))
                .order_by(SimBalance.at.desc())
            ).first()
            tried = (
                SimKeepalive.select()
                .where(SimKeepalive.iccid == iccid)
                .order_by(SimKeepalive.at.desc())
            ).first()
            kept = (
                SimKeepalive.select()
                .where((SimKeepalive.iccid == iccid) & SimKeepalive.error.is_null())
                .order_by(SimKeepalive.at.desc())
            ).first()
            return SimHistory(
                first_seen=sim.first_seen.timestamp() if sim else None,
                balance_asked_at=asked.at.timestamp() if asked else None,
                balance=Balance(read.amount, read.currency or "") if read else None,
                balance_at=read.at.timestamp() if read else None,
                keepalive_at=kept.at.timestamp() if kept else None,
                keepalive_tried_at=tried.at.timestamp() if tried else None,
            )

        return await self._store.read(lookup)

    async def record_balance(self, row: BalanceAnswer) -> None:
        await self._store.record_balance(row)

    async def record_keepalive(self, row: KeepaliveAction) -> None:
        await self._store.record_keepalive(row)
