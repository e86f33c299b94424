"""Fixtures every test folder may use."""

# A whole site (emulated modems, the real agent, the OnlineSim stand-in) in the test's loop.
from tests.e2e.site import start_site

__all__ = ["start_site"]
