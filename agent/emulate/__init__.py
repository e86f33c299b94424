"""The emulated world simedge is developed, tested, demonstrated and measured against.

There is no hardware and no OnlineSim account in development: ``onlinesim`` is a local
stand-in of OnlineSim's reseller API with fault injection, and ``modems`` emulates USB GSM
modems on pseudo-terminals. Both are product parts, started by ``simedge emulate ...``,
by the tests and by ``simedge demo``.
"""
