"""The operator's client: start, signal, cancel, retry, pause, resume and inspect sagas.

It is written against the ports (a transport, a store), so it runs on the
memory adapters as on RabbitMQ and Redis (``coordinator.service.open_client``).
The CLI, and later the REST API and the dashboard, are faces of this one client.
"""

from contracts._public import show_as_public
from coordinator._errors import RequestRefusedError
from coordinator.client._accept import cancel_checked, signal_checked, start_checked
from coordinator.client._client import ClientStore, SagaClient, as_json
from coordinator.client._control import pause_checked, resume_checked, retry_checked

__all__ = [
    "ClientStore",
    "RequestRefusedError",
    "SagaClient",
    "as_json",
    "cancel_checked",
    "pause_checked",
    "resume_checked",
    "retry_checked",
    "signal_checked",
    "start_checked",
]

show_as_public(__name__, globals(), __all__)
