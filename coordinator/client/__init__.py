"""The operator's client: start, signal, cancel and inspect sagas of a deployment.

The CLI, and later the REST API and the dashboard, are faces of this one client.
"""

from coordinator.client._accept import cancel_checked, signal_checked, start_checked
from coordinator.client._client import SagaClient

__all__ = ["SagaClient", "cancel_checked", "signal_checked", "start_checked"]
