"""The ports the runtime is written against: small protocols, each with an
in-memory implementation (``coordinator.adapters.memory``) and a real one.

Every port method is one atomic operation on the backing server; the runtime
composes them. A port never interprets saga semantics.
"""

from contracts._public import show_as_public
from coordinator.ports._breakers import (
    BreakerEvent,
    BreakerOp,
    BreakerPolicy,
    BreakerSnapshot,
    BreakerState,
    BreakerStore,
)
from coordinator.ports._messaging import (
    DeadLetter,
    DeadLetters,
    Delivery,
    Exchange,
    Handler,
    Resign,
    Subscription,
    Transport,
)
from coordinator.ports._participants import (
    Clock,
    IdempotencyStore,
    ParticipantService,
    RecordedReply,
    Turn,
    Worker,
)
from coordinator.ports._storage import (
    Commit,
    CommitResult,
    CountedSagas,
    HistoryEntry,
    IdleSagas,
    OutboxEntry,
    OutboxStore,
    ParkedSagas,
    Refusal,
    Refusals,
    SagaCounts,
    SagaQueries,
    SagaStore,
    SagaVersions,
    StartedSagas,
    Stored,
    TimerStore,
    pinned,
)

__all__ = [
    "BreakerEvent",
    "BreakerOp",
    "BreakerPolicy",
    "BreakerSnapshot",
    "BreakerState",
    "BreakerStore",
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
    "IdleSagas",
    "OutboxEntry",
    "OutboxStore",
    "ParkedSagas",
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
    "Subscription",
    "TimerStore",
    "Transport",
    "Turn",
    "Worker",
    "pinned",
]

show_as_public(__name__, globals(), __all__)
