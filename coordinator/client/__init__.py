"""The operator's client: start, signal, cancel, retry, pause, resume and inspect sagas.

It is written against the ports (a transport, a store), so it runs on the
memory adapters as on RabbitMQ and Redis (``coordinator.service.open_client``).
The CLI, and later the REST API and the dashboard, are faces of this one client
and of the operator's repair functions beside it (dead letters, stuck sagas).
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
from coordinator.client._control import pause_checked, resume_checked, retry_checked
from coordinator.client._dead_letters import (
    dead_letter_json,
    list_dead_letters,
    namespace_queues,
    purge_dead_letters,
    redrive_dead_letters,
    show_dead_letter,
)
from coordinator.client._replay import export_finished, replay_saga, saga_ids
from coordinator.client._search import SagaFilter, SagaPage, SagaSummary, search_sagas
from coordinator.client._shapes import (
    DefinitionShape,
    StepShape,
    WaitShape,
    shape_of,
    shapes_of,
)
from coordinator.client._stuck import Stuck, Wait, find_stuck

__all__ = [
    "BreakerStatus",
    "ClientStore",
    "Override",
    "DefinitionShape",
    "RequestRefusedError",
    "SagaClient",
    "SagaFilter",
    "SagaPage",
    "SagaSummary",
    "StepShape",
    "Stuck",
    "Wait",
    "WaitShape",
    "as_json",
    "breaker_events",
    "breaker_statuses",
    "cancel_checked",
    "pause_checked",
    "resume_checked",
    "retry_checked",
    "dead_letter_json",
    "find_stuck",
    "list_dead_letters",
    "namespace_queues",
    "purge_dead_letters",
    "redrive_dead_letters",
    "export_finished",
    "replay_saga",
    "saga_ids",
    "search_sagas",
    "shape_of",
    "shapes_of",
    "show_dead_letter",
    "override_breaker",
    "signal_checked",
    "start_checked",
]

show_as_public(__name__, globals(), __all__)
