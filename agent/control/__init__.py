"""The control socket: how the dashboard and the CLI see and steer the running agent.

The protocol is described in :mod:`agent.control.protocol`; the server side is
:mod:`agent.control.server`, the client side :mod:`agent.control.client` (the only part
of the agent the dashboard imports besides :mod:`agent.status`).
"""
