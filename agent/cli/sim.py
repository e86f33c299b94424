"""``simedge sim``: a SIM's own number, set by hand (see agent.cli.manage)."""

from agent.cli.manage import configure_sim as configure
from agent.cli.manage import run_sim as run

HELP = "set a SIM's own number by hand: simedge sim set-number ICCID +NUMBER"

__all__ = ["HELP", "configure", "run"]
