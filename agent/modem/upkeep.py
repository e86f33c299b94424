"""A SIM's upkeep: its balance asked by USSD on a schedule and on demand, and the
keep-alive action before its network's deadline.

One :class:`SimUpkeep` serves the whole site; each modem's worker calls :meth:`check`
from its owner task (an inbox item like any other), so a USSD question never runs while
an SMS is being read, and the worker re-arms its upkeep timer with the delay the check
returns: at most ``check_every`` (an hour), so a wall clock that jumped, or a simulated
one in tests, is looked at again soon.

What was asked and answered is kept by the :class:`UpkeepLedger` (the store, in the
agent: tables ``sim_balance`` and ``sim_keepalive``), so the schedule survives restarts
and swaps: it follows the ICCID, not the slot.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from agent.config import SimsConfig
from agent.logs import get_logger
from agent.modem import balance as balances
from agent.modem import keepalive, ussd
from agent.modem.balance import Balance, BalanceRecipe, UnreadableAnswer
from agent.modem.keepalive import KeepalivePolicy
from agent.modem.session import AtSession
from agent.modem.startup import SimIdentity, Vendor
from agent.protocol.urc import UssdReceived

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


class UpkeepLedger(Protocol):
    async def history(self, iccid: str) -> SimHistory: ...

    async def record_balance(
        self,
        iccid: str,
        *,
        at: float,
        slot: str,
        code: str,
        balance: Balance | None,
        answer: str | None,
        error: str | None,
    ) -> None: ...

    async def record_keepalive(
        self,
        iccid: str,
        *,
        at: float,
        slot: str,
        action: str,
        answer: str | None,
        error: str | None,
    ) -> None: ...


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
                network: KeepalivePolicy(policy.days, policy.ussd)
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
        vendor: Vendor,
        answers: asyncio.Queue[UssdReceived],
        command_timeout: float,
        answer_within: float,
        balance_now: bool = False,
    ) -> UpkeepView:
        """Do what is due for ``sim`` (the balance when ``balance_now``, whatever the
        schedule), record it, and say what to show and when to look again."""
        history = await self.ledger.history(sim.iccid)
        network = sim.operator or ""
        recipe = self.balance_recipes.get(network)
        policy = self.keepalive_policies.get(network)
        now = self.clock()
        # A SIM the ledger has no row for yet (its row is written beside this check): the
        # first check's time, kept, or every check would move its deadline on.
        first_seen = history.first_seen or self._first_checked.setdefault(sim.iccid, now)

        if policy is not None and now >= keepalive.due_at(policy, history.keepalive_at, first_seen):
            answer = await ussd.ask(
                session,
                policy.ussd,
                vendor,
                answers,
                command_timeout=command_timeout,
                answer_within=answer_within,
            )
            now = self.clock()
            await self.ledger.record_keepalive(
                sim.iccid,
                at=now,
                slot=slot,
                action=f"ussd {policy.ussd}",
                answer=answer.text or answer.raw,
                error=answer.error,
            )
            if answer.error is None:
                log.info("%s: keep-alive %s done for SIM %s", slot, policy.ussd, sim.iccid)
                history = _replace_keepalive(history, now)
            else:
                log.warning("%s: keep-alive %s failed: %s", slot, policy.ussd, answer.error)

        due = balances.next_due(sim.iccid, history.balance_asked_at, self.balance_interval)
        if recipe is not None and (balance_now or now >= due):
            history = await self._ask_balance(
                session, sim, recipe, history, slot, vendor, answers, command_timeout, answer_within
            )
            due = balances.next_due(sim.iccid, history.balance_asked_at, self.balance_interval)
        elif recipe is None and balance_now:
            log.info("%s: no balance USSD recipe for network %s", slot, network or "?")

        now = self.clock()
        next_times = [due] if recipe is not None else []
        active_until = None
        if policy is not None:
            active_until = keepalive.active_until(policy, history.keepalive_at, first_seen)
            next_times.append(keepalive.due_at(policy, history.keepalive_at, first_seen))
        wait = min([self.check_every, *(max(0.0, t - now) for t in next_times)])
        return UpkeepView(history.balance, history.balance_at, active_until, max(wait, 1.0))

    async def _ask_balance(
        self,
        session: AtSession,
        sim: SimIdentity,
        recipe: BalanceRecipe,
        history: SimHistory,
        slot: str,
        vendor: Vendor,
        answers: asyncio.Queue[UssdReceived],
        command_timeout: float,
        answer_within: float,
    ) -> SimHistory:
        answer = await ussd.ask(
            session,
            recipe.code,
            vendor,
            answers,
            command_timeout=command_timeout,
            answer_within=answer_within,
        )
        now = self.clock()
        read: Balance | None = None
        error = answer.error
        if answer.text is not None:
            try:
                read = balances.read_balance(answer.text, recipe)
            except UnreadableAnswer as exc:
                error = str(exc)
        await self.ledger.record_balance(
            sim.iccid,
            at=now,
            slot=slot,
            code=recipe.code,
            balance=read,
            answer=answer.text or answer.raw,
            error=error,
        )
        if read is None:
            log.warning("%s: balance %s of SIM %s: %s", slot, recipe.code, sim.iccid, error)
            return SimHistory(
                history.first_seen, now, history.balance, history.balance_at, history.keepalive_at
            )
        log.info("%s: balance of SIM %s: %g %s", slot, sim.iccid, read.amount, read.currency)
        return SimHistory(history.first_seen, now, read, now, history.keepalive_at)


def _replace_keepalive(history: SimHistory, at: float) -> SimHistory:
    return SimHistory(
        history.first_seen, history.balance_asked_at, history.balance, history.balance_at, at
    )


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
            )

        return await self._store.read(lookup)

    async def record_balance(
        self,
        iccid: str,
        *,
        at: float,
        slot: str,
        code: str,
        balance: Balance | None,
        answer: str | None,
        error: str | None,
    ) -> None:
        await self._store.record_balance(
            iccid,
            at=at,
            slot=slot,
            code=code,
            amount=balance.amount if balance else None,
            currency=balance.currency if balance else None,
            answer=answer,
            error=error,
        )

    async def record_keepalive(
        self,
        iccid: str,
        *,
        at: float,
        slot: str,
        action: str,
        answer: str | None,
        error: str | None,
    ) -> None:
        await self._store.record_keepalive(
            iccid, at=at, slot=slot, action=action, answer=answer, error=error
        )
