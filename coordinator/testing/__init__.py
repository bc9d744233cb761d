"""Testing sagas: :class:`Scenario` drives the pure core step by step, and
:class:`Harness` runs the whole runtime in memory on a virtual clock."""

from contracts._public import show_as_public
from coordinator.adapters.memory import VirtualClock
from coordinator.testing._harness import Harness
from coordinator.testing._scenario import Scenario

__all__ = ["Harness", "Scenario", "VirtualClock"]

show_as_public(__name__, globals(), __all__)
