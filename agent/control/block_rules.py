"""The block-rule operations of the control socket, on a store.

One implementation for both ways in: the running agent answers them over its socket, and
``simedge block`` runs them on the database directly when the agent is down (the agent is
then not the store's writer, so nothing races it). Their shapes are in
:mod:`agent.control.protocol`.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from agent.errors import ControlError
from agent.store import Store
from agent.store.blocking import BlockRule

BLOCK_RULE_OPS = ("block_rules", "preview_block_rule", "add_block_rule", "remove_block_rule")


def _optional_text(op: str, arguments: dict[str, Any], key: str) -> str | None:
    value = arguments.get(key)
    if value is not None and not isinstance(value, str):
        raise ControlError(f"{op}: {key} must be a string, not {type(value).__name__}")
    return value


def _rule(op: str, arguments: dict[str, Any]) -> BlockRule:
    """The rule the arguments describe; BlockRuleError names what is wrong with it."""
    name = arguments.get("name", "new rule")  # a preview may come before the name
    if not isinstance(name, str):
        raise ControlError(f"{op}: name must be a string, not {type(name).__name__}")
    return BlockRule(
        name, _optional_text(op, arguments, "sender"), _optional_text(op, arguments, "text")
    )


async def block_rule_op(store: Store, op: str, arguments: dict[str, Any]) -> Any:
    """Answer one of ``BLOCK_RULE_OPS``; refusals are SimedgeErrors a person can read."""
    if op == "block_rules":
        return [
            asdict(rule.status(timing_out=store.block_rule_timing_out(rule)))
            for rule in store.block_rules
        ]
    if op == "preview_block_rule":
        return (await store.preview_block_rule(_rule(op, arguments))).to_json()
    if op == "add_block_rule":
        force = arguments.get("force", False)
        if not isinstance(force, bool):
            raise ControlError(f"{op}: force must be true or false")
        rule = _rule(op, arguments)
        trial = await store.add_block_rule(rule, force=force)
        return f"block rule {rule.name} added; it {trial.describe()}"
    if op == "remove_block_rule":
        name = arguments["name"]
        if not isinstance(name, str):
            raise ControlError(f"{op}: name must be a string")
        await store.remove_block_rule(name)
        return f"block rule {name} removed"
    raise ControlError(f"{op} is not a block-rule operation")
