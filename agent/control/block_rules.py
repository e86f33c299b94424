"""The block-rule operations of the control socket, on a store.

One implementation for both ways in: the running agent serves them over its socket, and
``simedge block`` runs them on the database directly when the agent is down (the agent is
then not the store's writer, so nothing races it). Their requests are declared in
:mod:`agent.control.protocol`.
"""

from __future__ import annotations

from agent.control.protocol import (
    AddBlockRule,
    ListBlockRules,
    PreviewBlockRule,
    RemoveBlockRule,
    handles,
)
from agent.status import BlockRuleStatus, BlockRuleTrial
from agent.store import Store
from agent.store.blocking import BlockRule


class BlockRuleOps:
    """The handlers of the block-rule requests; refusals are SimedgeErrors (a bad pattern
    is a BlockRuleError naming it) that a person can read."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @handles(ListBlockRules)
    async def list_rules(self, _: ListBlockRules) -> tuple[BlockRuleStatus, ...]:
        store = self.store
        return tuple(
            rule.status(timing_out=store.block_rule_timing_out(rule)) for rule in store.block_rules
        )

    @handles(PreviewBlockRule)
    async def preview(self, request: PreviewBlockRule) -> BlockRuleTrial:
        rule = BlockRule(request.name, request.sender, request.text)
        return (await self.store.preview_block_rule(rule)).to_status()

    @handles(AddBlockRule)
    async def add(self, request: AddBlockRule) -> str:
        rule = BlockRule(request.name, request.sender, request.text)
        trial = await self.store.add_block_rule(rule, force=request.force)
        return f"block rule {rule.name} added; it {trial.describe()}"

    @handles(RemoveBlockRule)
    async def remove(self, request: RemoveBlockRule) -> str:
        await self.store.remove_block_rule(request.name)
        return f"block rule {request.name} removed"
