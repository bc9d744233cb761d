"""A booking saga with two participant services: what ``saga init NAME`` writes.

Hold a seat, then charge the card; a declined card releases the seat.
"""

from .saga import Booking, saga
from .services import build_services

__all__ = ["Booking", "build_services", "saga"]
