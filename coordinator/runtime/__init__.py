"""The coordinator runtime: receive -> load -> decide -> commit -> publish -> ack.

It drives the pure core through the ports; it knows no broker and no database.
"""

from contracts._public import show_as_public
from coordinator.runtime._coordinator import Coordinator
from coordinator.runtime._registry import check_keys
from coordinator.runtime._senders import WRONG_SENDER, SenderCheck
from coordinator.runtime._transition import Store

__all__ = ["WRONG_SENDER", "Coordinator", "SenderCheck", "Store", "check_keys"]

show_as_public(__name__, globals(), __all__)
