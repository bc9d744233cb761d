"""saga-coordinator: sagas for Python services on RabbitMQ and Redis.

Define a saga with :class:`Saga`, run it with :class:`Coordinator` (or
``saga run``), test it with :mod:`coordinator.testing`.
"""

from contracts import SagaError
from coordinator._dsl import Saga, to_mermaid
from coordinator._errors import (
    ConcurrencyError,
    PublishFailedError,
    SagaDefinitionError,
    SagaRefusedError,
    UnknownSagaError,
    UnroutableError,
)
from coordinator.core import Retry, SagaDefinition, SagaState, SagaStatus
from coordinator.runtime._coordinator import Coordinator

__all__ = [
    "ConcurrencyError",
    "Coordinator",
    "PublishFailedError",
    "Retry",
    "Saga",
    "SagaDefinition",
    "SagaDefinitionError",
    "SagaError",
    "SagaRefusedError",
    "SagaState",
    "SagaStatus",
    "UnknownSagaError",
    "UnroutableError",
    "to_mermaid",
]
