"""The four order services as one participant process:
``saga participant coordinator.examples.orders.worker:services``.

Effects are written to the SQLite file named by ``ORDERS_LEDGER`` (default
``orders-ledger.sqlite3``), so tests can check that each happened exactly once;
its ``received`` table lists every command a handler got, so they can count what
a service was sent while it was down.
``ORDERS_DOWN`` (or the file named by ``ORDERS_DOWN_FILE``) takes services down:
see :class:`~coordinator.examples.orders.services.Outages`.
``ORDERS_SERVICES`` (comma-separated, e.g. ``payments``) runs only those services:
one container per service in ``deploy/``, each with its own RabbitMQ user.
"""

from __future__ import annotations

import os

from coordinator import SettingsError
from coordinator.adapters.memory import SystemClock
from coordinator.examples.orders.services import Outages, SqliteLedger, build_services
from participants import Service


def services() -> list[Service]:
    ledger = SqliteLedger(os.environ.get("ORDERS_LEDGER", "orders-ledger.sqlite3"))
    outages = Outages(
        Outages.parse(os.environ.get("ORDERS_DOWN", "")), file=os.environ.get("ORDERS_DOWN_FILE")
    )
    found = build_services(ledger, SystemClock(), outages)
    chosen = os.environ.get("ORDERS_SERVICES", "").split(",")
    only = {name.strip() for name in chosen if name.strip()}
    unknown = only - {service.name for service in found}
    if unknown:
        names = ", ".join(service.name for service in found)
        raise SettingsError(
            f"ORDERS_SERVICES: no service {', '.join(sorted(unknown))}; choose from {names}"
        )
    return [service for service in found if not only or service.name in only]
