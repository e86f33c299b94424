"""Emulated GSM modems on pseudo-terminals: the modem side of the AT conversation.

``Hub`` runs many modems in one event loop (``simedge emulate modems``); ``Modem`` is one
module's command interpreter, testable with bytes alone; ``ControlClient`` talks to a
running hub (inject SMS, cause faults, list state).
"""

from agent.emulate.modems.control import ControlClient
from agent.emulate.modems.hub import Hub
from agent.emulate.modems.modem import ManualClock, Modem, Pending
from agent.emulate.modems.profiles import PROFILE_NAMES, PROFILES, Profile
from agent.emulate.modems.sim import OPERATORS, SimCard, make_sim

__all__ = [
    "OPERATORS",
    "PROFILES",
    "PROFILE_NAMES",
    "ControlClient",
    "Hub",
    "ManualClock",
    "Modem",
    "Pending",
    "Profile",
    "SimCard",
    "make_sim",
]
