"""The agent's HTTP listener: OnlineSim's webhook call, ``/healthz`` and ``/metrics``.

It answers from what the agent already knows (a :class:`SiteView`) and never touches a
modem, so OnlineSim gets its list in milliseconds. Wiring, in the supervisor::

    metrics = Metrics()                         # updated by workers, store and uplink
    app = WebhookApp(view, metrics, path=config.webhook.path, token=config.webhook.token)
    server = WebhookServer(app)
    await server.start(config.webhook.host, config.webhook.port)
    ...
    await server.stop()

The URL to register at OnlineSim is ``http://HOST:PORT{path}?token={token}``;
``Authorization: Bearer {token}`` is accepted too.
"""

from agent.webhook.app import SiteView, WebhookApp
from agent.webhook.metrics import Metrics
from agent.webhook.server import Limits, WebhookServer

__all__ = ["Limits", "Metrics", "SiteView", "WebhookApp", "WebhookServer"]
