"""In-memory adapters: every port in one process, for the demo and for tests.

They pass the same contract suites as the RabbitMQ and Redis adapters.
"""

from contracts._public import show_as_public
from coordinator.adapters.memory._breakers import MemoryBreakerStore
from coordinator.adapters.memory._clock import SystemClock, VirtualClock
from coordinator.adapters.memory._dead_letters import MemoryDeadLetters
from coordinator.adapters.memory._idempotency import MemoryIdempotencyStore
from coordinator.adapters.memory._store import MemorySagaStore
from coordinator.adapters.memory._transport import MemoryTransport

__all__ = [
    "MemoryBreakerStore",
    "MemoryDeadLetters",
    "MemoryIdempotencyStore",
    "MemorySagaStore",
    "MemoryTransport",
    "SystemClock",
    "VirtualClock",
]

show_as_public(__name__, globals(), __all__)
