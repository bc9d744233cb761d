"""Wire contracts shared by the saga coordinator and its participants.

Every message is a frozen, keyword-only msgspec Struct encoded as a JSON
object whose ``type`` property is the class name. This package depends on
msgspec and the standard library only, so a participant can use it without
pulling in the coordinator.

Where messages go (exchanges, queues, routing keys, header names) is in
`routes`, e.g. ``routes.commands_queue("inventory")``.
"""

from contracts import _routes as routes
from contracts._asyncapi import SagaContract, StepContract, asyncapi
from contracts._codec import DEFAULT_CODEC, Codec
from contracts._encrypted import E2E_PREFIX, Encrypted
from contracts._errors import ContractError, ContractErrorReason, SagaError
from contracts._messages import (
    CONTRACTS_VERSION,
    LIFECYCLE_EVENTS,
    CancelSaga,
    Command,
    CoordinatorInbound,
    LifecycleEvent,
    PauseSaga,
    Reply,
    ResumeSaga,
    RetrySaga,
    SagaLifecycle,
    Signal,
    StartSaga,
    StepKind,
    TaskCompleted,
    TaskFailed,
    WireMessage,
)
from contracts._public import show_as_public
from contracts._schema import json_schema

__all__ = [
    # messages
    "Command",
    "TaskCompleted",
    "TaskFailed",
    "StartSaga",
    "Signal",
    "CancelSaga",
    "RetrySaga",
    "PauseSaga",
    "ResumeSaga",
    "SagaLifecycle",
    "StepKind",
    "LifecycleEvent",
    "LIFECYCLE_EVENTS",
    "Reply",
    "CoordinatorInbound",
    "WireMessage",
    "CONTRACTS_VERSION",
    # fields encrypted end to end
    "Encrypted",
    "E2E_PREFIX",
    # codec
    "Codec",
    "DEFAULT_CODEC",
    # errors
    "SagaError",
    "ContractError",
    "ContractErrorReason",
    # where messages go
    "routes",
    # schema export
    "json_schema",
    "asyncapi",
    "SagaContract",
    "StepContract",
]

show_as_public(__name__, globals(), __all__)
