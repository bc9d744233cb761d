"""The operator's client: start, signal, cancel and inspect sagas of a deployment.

It is written against the ports (a transport, a store), so it runs on the
memory adapters as on RabbitMQ and Redis (``coordinator.service.open_client``).
The CLI, and later the REST API and the dashboard, are faces of this one client.
"""

from contracts._public import show_as_public
from coordinator._errors import RequestRefusedError
from coordinator.client._accept import cancel_checked, signal_checked, start_checked
from coordinator.client._breakers import (
    BreakerStatus,
    Override,
    breaker_events,
    breaker_statuses,
    override_breaker,
)
from coordinator.client._client import ClientStore, SagaClient, as_json

__all__ = [
    "BreakerStatus",
    "ClientStore",
    "Override",
    "RequestRefusedError",
    "SagaClient",
    "as_json",
    "breaker_events",
    "breaker_statuses",
    "cancel_checked",
    "override_breaker",
    "signal_checked",
    "start_checked",
]

show_as_public(__name__, globals(), __all__)
