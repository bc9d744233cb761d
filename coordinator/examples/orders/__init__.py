"""An order saga with four participant services: the example used by ``saga demo``."""

from coordinator.examples.orders.saga import Order, saga
from coordinator.examples.orders.services import Ledger, Outages, SqliteLedger, build_services

__all__ = ["Ledger", "Order", "Outages", "SqliteLedger", "build_services", "saga"]
