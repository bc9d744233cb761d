"""The public surface of every package, pinned: a name added or removed is a decision.

Each package exports an explicit ``__all__``; the classes and functions it
defines in its private modules say the package's name in reprs (msgspec Structs,
dataclasses and pydantic models excepted: see ``contracts._public``).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect

import msgspec
import pytest

PUBLIC = {
    "contracts": {
        "CONTRACTS_VERSION",
        "CancelSaga",
        "RetrySaga",
        "PauseSaga",
        "ResumeSaga",
        "Codec",
        "Command",
        "ContractError",
        "ContractErrorReason",
        "CoordinatorInbound",
        "DEFAULT_CODEC",
        "LIFECYCLE_EVENTS",
        "LifecycleEvent",
        "Reply",
        "SagaError",
        "SagaLifecycle",
        "Signal",
        "StartSaga",
        "StepKind",
        "TaskCompleted",
        "TaskFailed",
        "WireMessage",
        "asyncapi",
        "json_schema",
        "routes",
    },
    "coordinator": {
        "Breaker",
        "ConcurrencyError",
        "Coordinator",
        "PublishFailedError",
        "RequestRefusedError",
        "Retry",
        "Saga",
        "SagaClient",
        "SagaDefinition",
        "SagaDefinitionError",
        "SagaError",
        "SagaRefusedError",
        "SagaState",
        "SagaStatus",
        "ServerUnreachableError",
        "Settings",
        "StoreUnavailableError",
        "UnknownSagaError",
        "UnroutableError",
        "to_mermaid",
    },
    "coordinator.ports": {
        "BreakerEvent",
        "BreakerOp",
        "BreakerPolicy",
        "BreakerSnapshot",
        "BreakerState",
        "BreakerStore",
        "ParkedSagas",
        "Clock",
        "Commit",
        "CommitResult",
        "DeadLetter",
        "DeadLetters",
        "Delivery",
        "Exchange",
        "Handler",
        "HistoryEntry",
        "IdempotencyStore",
        "OutboxEntry",
        "OutboxStore",
        "ParticipantService",
        "RecordedReply",
        "Refusal",
        "Refusals",
        "SagaQueries",
        "SagaStore",
        "Stored",
        "Subscription",
        "TimerStore",
        "Transport",
        "Turn",
        "Worker",
        "IdleSagas",
    },
    "coordinator.backoff": {
        "OUTAGE_BACKOFF",
        "retry_through_outage",
    },
    "coordinator.core": {
        "TimerKey",
        "STEP_TRANSITIONS",
        "CancelRequested",
        "CancelTimer",
        "Decision",
        "Dispatch",
        "Effect",
        "Input",
        "NOTHING_DOWN",
        "Node",
        "Notify",
        "OnTimeout",
        "OnUnavailable",
        "ParallelDef",
        "Retry",
        "RetryRequested",
        "PauseRequested",
        "ResumeRequested",
        "SagaDefinition",
        "SagaState",
        "SagaStatus",
        "ServiceRecovered",
        "SignalReceived",
        "Start",
        "StartTimer",
        "StepCompleted",
        "StepDef",
        "StepFailed",
        "StepState",
        "StepStatus",
        "TimerFired",
        "WaitDef",
        "decide",
        "start",
    },
    "coordinator.breakers": {
        "REFRESH",
        "BreakerBoard",
        "Resume",
        "SnapshotStorage",
        "policies",
    },
    "coordinator.runtime": {
        "Coordinator",
        "Store",
    },
    "coordinator.client": {
        "BreakerStatus",
        "Override",
        "breaker_events",
        "breaker_statuses",
        "override_breaker",
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
        "Stuck",
        "Wait",
        "DefinitionShape",
        "StepShape",
        "WaitShape",
        "shape_of",
        "shapes_of",
        "dead_letter_json",
        "find_stuck",
        "list_dead_letters",
        "namespace_queues",
        "purge_dead_letters",
        "redrive_dead_letters",
        "show_dead_letter",
    },
    "coordinator.service": {
        "Settings",
        "configure_logging",
        "connect_rabbit",
        "connect_servers",
        "load_definition",
        "load_object",
        "loop_name",
        "open_client",
        "run_loop",
        "serve_coordinator",
        "until_signalled",
        "wait_for_server",
        "Operator",
        "open_operator",
        "record_deployment",
    },
    "coordinator.cli": {
        "app",
        "main",
    },
    "coordinator.testing": {
        "Harness",
        "Scenario",
        "VirtualClock",
    },
    "coordinator.adapters.memory": {
        "MemoryBreakerStore",
        "MemoryDeadLetters",
        "MemoryIdempotencyStore",
        "MemorySagaStore",
        "MemoryTransport",
        "SystemClock",
        "VirtualClock",
    },
    "coordinator.adapters.rabbitmq": {
        "RabbitDeadLetters",
        "RabbitTransport",
        "TopologyMismatchError",
        "definitions",
    },
    "coordinator.adapters.redis": {
        "RedisBreakerStore",
        "RedisClock",
        "RedisIdempotencyStore",
        "RedisSagaStore",
        "connect_redis",
    },
    "coordinator.examples.orders": {
        "Ledger",
        "Order",
        "Outages",
        "SqliteLedger",
        "build_services",
        "saga",
    },
    "participants": {
        "ALREADY_COMPENSATED",
        "CommandHandler",
        "Context",
        "Failure",
        "INVALID_COMMAND",
        "ParticipantWorker",
        "Registration",
        "Service",
        "ServiceDefinitionError",
        "serve_participants",
    },
}


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_the_public_names_are_pinned(package: str) -> None:
    module = importlib.import_module(package)
    assert set(module.__all__) == PUBLIC[package]
    assert len(module.__all__) == len(set(module.__all__)), "a name listed twice"
    for name in module.__all__:
        assert hasattr(module, name), f"{package}.{name} is listed but missing"


def _keeps_its_module(obj: object) -> bool:
    return inspect.isclass(obj) and (
        issubclass(obj, msgspec.Struct)
        or dataclasses.is_dataclass(obj)
        or (
            any(base.__module__.startswith("pydantic") for base in obj.__mro__)
            and not getattr(obj, "__pydantic_complete__", False)
        )
    )


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_exported_classes_and_functions_name_a_public_module(package: str) -> None:
    module = importlib.import_module(package)
    for name in module.__all__:
        obj = getattr(module, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)) or _keeps_its_module(obj):
            continue
        home = obj.__module__
        private = [part for part in home.split(".") if part.startswith("_")]
        assert not private or home.startswith(("msgspec", "typing")), (
            f"{package}.{name} shows the private module {home}"
        )


def test_a_public_class_repr_shows_its_package() -> None:
    from coordinator import Saga
    from coordinator.client import SagaClient
    from coordinator.testing import Harness

    assert repr(Saga) == "<class 'coordinator.Saga'>"
    assert repr(SagaClient) == "<class 'coordinator.client.SagaClient'>"
    assert repr(Harness) == "<class 'coordinator.testing.Harness'>"
    from coordinator import Settings

    assert repr(Settings) == "<class 'coordinator.service.Settings'>"
