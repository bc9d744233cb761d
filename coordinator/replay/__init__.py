"""A saga's recorded history: replayed through the pure core to prove a
definition still decides what it decided (``saga replay``), and shown as a
timeline (``saga history``, the demo).

It reads nothing by itself: the caller hands it the history and the stored
state (``coordinator.client`` does, for the command line). Replay sends nothing
and emits no span or metric.
"""

from contracts._public import show_as_public
from coordinator.replay._replay import Divergence, Replayed, replay
from coordinator.replay._timeline import describe_input, entry_json, print_timeline

__all__ = [
    "Divergence",
    "Replayed",
    "describe_input",
    "entry_json",
    "print_timeline",
    "replay",
]

show_as_public(__name__, globals(), __all__)
