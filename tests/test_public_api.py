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
        "E2E_PREFIX",
        "Encrypted",
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
        "SagaContract",
        "SagaError",
        "SagaLifecycle",
        "Signal",
        "StartSaga",
        "StepContract",
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
        "SealedDataError",
        "ServerUnreachableError",
        "SettingsError",
        "Settings",
        "StoreUnavailableError",
        "UnknownSagaError",
        "UnknownVersionError",
        "UnroutableError",
        "WrongUserError",
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
        "CountedSagas",
        "DeadLetter",
        "DeadLetters",
        "Delivery",
        "Exchange",
        "Handler",
        "Resign",
        "HistoryEntry",
        "IdempotencyStore",
        "OutboxEntry",
        "OutboxStore",
        "ParticipantService",
        "RecordedReply",
        "Refusal",
        "Refusals",
        "SagaCounts",
        "SagaQueries",
        "SagaStore",
        "SagaVersions",
        "StartedSagas",
        "Stored",
        "pinned",
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
    "coordinator.telemetry": {
        "ACTIVE_STATUSES",
        "Instruments",
        "NO_METERS",
        "ParticipantMetrics",
        "SECONDS_BUCKETS",
        "SagaMetrics",
        "SagaScope",
        "SagaTracer",
        "ServiceMeters",
        "ServiceTracer",
        "SpanMaker",
        "StoreSampler",
        "Telemetry",
        "TraceMode",
        "current_saga",
        "shutdown_tracing",
        "tracer_from_environment",
    },
    "coordinator.runtime": {
        "Coordinator",
        "SenderCheck",
        "Store",
        "check_keys",
        "WRONG_SENDER",
    },
    "coordinator.client": {
        "SagaFilter",
        "SagaPage",
        "SagaSummary",
        "search_sagas",
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
        "export_finished",
        "replay_saga",
        "saga_ids",
    },
    "coordinator.service": {
        "LOCAL",
        "ROLE_RANK",
        "ExposedWithoutTokensError",
        "HttpExtras",
        "Principal",
        "Role",
        "TokenEntry",
        "Tokens",
        "auth_middleware",
        "check_exposure",
        "new_token",
        "requires",
        "session_config",
        "recorded_deployment",
        "recorded_shapes",
        "HttpAddressError",
        "Observed",
        "http_address",
        "observe",
        "watch_servers",
        "Settings",
        "configure_logging",
        "check_signers",
        "connect_rabbit",
        "connect_servers",
        "keyring_of",
        "load_definition",
        "load_object",
        "loop_name",
        "open_client",
        "run_loop",
        "serve_coordinator",
        "until_signalled",
        "wait_for_server",
        "Operator",
        "Payloads",
        "open_operator",
        "resigner",
        "signed",
        "record_deployment",
        "redis_client",
        "tls_context",
    },
    "coordinator.dashboard": {
        "Backend",
        "BackendFactory",
        "dashboard_router",
        "open_backend",
    },
    "coordinator.api": {
        "ActionResult",
        "Backend",
        "BackendFactory",
        "CancelRequest",
        "Definition",
        "Graph",
        "OverrideRequest",
        "PauseRequest",
        "Problem",
        "PurgeRequest",
        "RedriveRequest",
        "SignalRequest",
        "StartRequest",
        "api_extras",
        "open_backend",
        "serve_api",
    },
    "coordinator.cli": {
        "app",
        "main",
    },
    "coordinator.replay": {
        "Divergence",
        "Replayed",
        "describe_input",
        "entry_json",
        "print_timeline",
        "replay",
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
        "user_definitions",
        "user_of",
    },
    "coordinator.adapters.signing": {
        "CONTENT_TYPE",
        "COORDINATOR",
        "FUTURE_TOLERANCE",
        "Keyring",
        "KeyringError",
        "OPERATOR",
        "SIG_HEADER",
        "SIG_TS_HEADER",
        "SigningTransport",
        "may_publish",
        "signed_bytes",
    },
    "coordinator.adapters.redis": {
        "RedisBreakerStore",
        "RedisClock",
        "RedisIdempotencyStore",
        "RedisSagaStore",
        "acl_users",
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
    "coordinator.examples.starter": {
        "Booking",
        "build_services",
        "saga",
    },
    "participants": {
        "ALREADY_COMPENSATED",
        "CommandHandler",
        "Context",
        "EndToEndKeys",
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
