"""``simedge outbox``: dead letters sent again by hand (see agent.cli.manage)."""

from agent.cli.manage import configure_outbox as configure
from agent.cli.manage import run_outbox as run

HELP = "send dead letters again: simedge outbox retry ID | --all-dead"

__all__ = ["HELP", "configure", "run"]
