"""Circuit breakers on participant services, one per service, shared by every
coordinator replica through a ``BreakerStore`` (pybreaker is the state machine).

The runtime sees them through three calls (``services_down``, ``record``,
``dispatched``); the service wires a :class:`BreakerBoard` to the coordinator.
"""

from contracts._public import show_as_public
from coordinator.breakers._board import REFRESH, BreakerBoard, Resume
from coordinator.breakers._policies import policies
from coordinator.breakers._storage import SnapshotStorage

__all__ = ["REFRESH", "BreakerBoard", "Resume", "SnapshotStorage", "policies"]

show_as_public(__name__, globals(), __all__)
