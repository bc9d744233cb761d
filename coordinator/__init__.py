"""saga-coordinator: sagas for Python services on RabbitMQ and Redis.

Define a saga with :class:`Saga`, run it with :class:`Coordinator` (or
``saga run``, configured by :class:`Settings`), operate it with
:class:`SagaClient` (or the ``saga`` command line), test it with
:mod:`coordinator.testing`.
"""

from contracts import SagaError
from contracts._public import show_as_public
from coordinator._dsl import Breaker, Saga
from coordinator._errors import (
    ConcurrencyError,
    PublishFailedError,
    RequestRefusedError,
    SagaDefinitionError,
    SagaRefusedError,
    SealedDataError,
    ServerUnreachableError,
    SettingsError,
    StoreUnavailableError,
    UnknownSagaError,
    UnknownVersionError,
    UnroutableError,
    WrongUserError,
)
from coordinator._graph import to_mermaid
from coordinator.client import SagaClient
from coordinator.core import Retry, SagaDefinition, SagaState, SagaStatus
from coordinator.runtime import Coordinator
from coordinator.service import Settings

__all__ = [
    "Breaker",
    "ConcurrencyError",
    "Coordinator",
    "PublishFailedError",
    "RequestRefusedError",
    "Retry",
    "Saga",
    "SagaDefinition",
    "SagaDefinitionError",
    "SagaError",
    "SagaRefusedError",
    "SagaClient",
    "SagaState",
    "SagaStatus",
    "ServerUnreachableError",
    "SealedDataError",
    "SettingsError",
    "Settings",
    "StoreUnavailableError",
    "UnknownSagaError",
    "UnknownVersionError",
    "UnroutableError",
    "WrongUserError",
    "to_mermaid",
]

show_as_public(__name__, globals(), __all__)
