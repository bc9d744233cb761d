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
    HistoryEntry,
    IdleSagas,
    OutboxEntry,
    OutboxStore,
    ParkedSagas,
    Refusal,
    Refusals,
    SagaQueries,
    SagaStore,
    Stored,
    TimerStore,
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
    "DeadLetter",
    "DeadLetters",
    "Delivery",
    "Exchange",
    "Handler",
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
    "SagaQueries",
    "SagaStore",
    "Stored",
    "Subscription",
    "TimerStore",
    "Transport",
    "Turn",
    "Worker",
]

show_as_public(__name__, globals(), __all__)
