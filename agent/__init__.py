"""simedge: the edge agent of an OnlineSim reseller site.

The packages below are layered; arrows point one way (checked by tests/test_layering.py):

    cli ─▶ supervisor ─▶ modem, store, uplink, webhook, control ─▶ protocol
    tui ─▶ agent.status (plain dataclasses) and the control socket, nothing else

``agent.protocol`` is pure: bytes in, typed events and values out, no I/O.
"""

__version__ = "0.1.0"
