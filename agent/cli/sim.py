"""``simedge sim``: a SIM's own number set by hand, its balance asked now (agent.cli.manage)."""

from agent.cli.manage import configure_sim as configure
from agent.cli.manage import run_sim as run

HELP = "a SIM by hand: simedge sim set-number ICCID +NUMBER, simedge sim balance SLOT|ICCID"

__all__ = ["HELP", "configure", "run"]
