"""The four order participants, written with the participants SDK.

Their behaviour follows the order, so every path of the saga can be shown:
an ``out-of-stock`` sku, a ``declined`` card, a ``flaky`` card (one transient
failure, then success), a ``slow`` shipper (answers after the saga stopped
waiting). Effects go to a :class:`Ledger`, the services' own store, which the
tests and the demo read to check that each effect happened exactly once.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Literal, NamedTuple

from coordinator.examples.orders.messages import (
    AwardPoints,
    Booked,
    BookShipment,
    CancelShipment,
    Charge,
    Charged,
    Refund,
    Release,
    Reserve,
    Reserved,
    RevokePoints,
)
from coordinator.ports import Clock
from participants import Context, Failure, Service

SLOW_SHIPPER_SECONDS = 60.0


class OutOfStock(Failure):
    retryable = False


class CardDeclined(Failure):
    retryable = False


class GatewayTimeout(Failure):
    retryable = True


class ServiceDown(Failure):
    retryable = True


Outage = Literal["failing", "silent"]


class Outages:
    """A switch that takes services down, to watch the circuit breakers work.

    A service that is ``failing`` answers every command with a retryable
    failure (its database is down, say); one that is ``silent`` never answers
    (its commands hang until it is back up). The demo and the tests flip
    :attr:`down`; a participant process reads ``ORDERS_DOWN`` (``payments`` or
    ``payments:silent,shipping``) at start, or, with ``ORDERS_DOWN_FILE``, the
    same text from that file on every command, so it can be flipped while the
    process runs.
    """

    def __init__(self, down: Mapping[str, Outage] | None = None, *, file: str | None = None):
        self.down: dict[str, Outage] = dict(down or {})
        self._file = Path(file) if file else None

    @classmethod
    def parse(cls, text: str) -> dict[str, Outage]:
        """``payments,shipping:silent`` -> {"payments": "failing", "shipping": "silent"}."""
        found: dict[str, Outage] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            service, _, mode = item.partition(":")
            found[service] = "silent" if mode == "silent" else "failing"
        return found

    def of(self, service: str) -> Outage | None:
        if self._file is not None:
            try:
                return self.parse(self._file.read_text()).get(service)
            except FileNotFoundError:
                return None
        return self.down.get(service)

    async def check(self, service: str, clock: Clock) -> None:
        """Return if ``service`` is up; raise if it is failing; hang while it is silent."""
        while (outage := self.of(service)) == "silent":
            await clock.sleep(timedelta(seconds=1))
        if outage == "failing":
            raise ServiceDown(f"{service} is down")


class Received(NamedTuple):
    """One command as a service received it, before its outage switch was checked.

    ``at`` is the participant's wall clock (seconds since the epoch); ``deadline``
    the command's (when the coordinator stops waiting), from which a test tells
    when it was sent: the deadline less the step's timeout.
    """

    service: str
    command: str
    order_id: str
    saga_id: str
    kind: str
    attempt: int
    at: float
    deadline: float | None


class Ledger:
    """Effects applied by the participants, counted by ``(service, effect, order_id)``.

    Each effect is applied once per idempotency key, as a real service stores
    the key with its effect: a handler run again for the same key (its worker
    died before the reply was recorded) changes nothing. ``runs`` counts the
    handler runs per key, so that tests can tell such re-runs apart.
    ``received`` lists every command that reached a handler, applied or not (a
    service that is down still receives them), so that tests can count what a
    service was sent while its circuit breaker was open.

    A cancelled shipment leaves a tombstone, so a booking that arrives after its
    cancellation (a slow first attempt) is refused instead of applied.
    """

    def __init__(self) -> None:
        self.effects: Counter[tuple[str, str, str]] = Counter()
        self.runs: Counter[str] = Counter()
        self._cancelled: set[str] = set()
        self._tried: set[str] = set()
        self.commands: list[Received] = []

    def received(self, service: str, command: str, order_id: str, ctx: Context) -> None:
        """Note a command on arrival, before the service decides anything about it."""
        self.commands.append(_received(service, command, order_id, ctx))

    def all_received(self) -> list[Received]:
        return list(self.commands)

    def apply(self, service: str, effect: str, order_id: str, key: str) -> None:
        self.runs[key] += 1
        if self.runs[key] == 1:
            self.effects[(service, effect, order_id)] += 1

    def of(self, order_id: str) -> list[str]:
        """Every effect applied for the order, sorted, once per application."""
        return sorted(
            f"{s}.{e}" for (s, e, o), n in self.effects.items() for _ in range(n) if o == order_id
        )

    def cancel_shipment(self, order_id: str) -> None:
        self._cancelled.add(order_id)

    def shipment_cancelled(self, order_id: str) -> bool:
        return order_id in self._cancelled

    def first_try(self, key: str) -> bool:
        """True the first time ``key`` is seen (drives the flaky card)."""
        if key in self._tried:
            return False
        self._tried.add(key)
        return True


class SqliteLedger(Ledger):
    """The same ledger in a SQLite file, shared by participant processes and read by tests."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
        # Participant processes start together on one file: switching it to WAL can be
        # refused with "database is locked" at once (the busy timeout does not cover
        # that switch), so the switch is tried again for a few seconds.
        for attempt in range(50):
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError:
                if attempt == 49:
                    raise
                time.sleep(0.1)
        self._db.executescript(
            "CREATE TABLE IF NOT EXISTS effects"
            " (service TEXT, effect TEXT, order_id TEXT, key TEXT UNIQUE);"
            "CREATE TABLE IF NOT EXISTS runs (key TEXT);"
            "CREATE TABLE IF NOT EXISTS marks (key TEXT PRIMARY KEY);"
            "CREATE TABLE IF NOT EXISTS received (service TEXT, command TEXT, order_id TEXT,"
            " saga_id TEXT, kind TEXT, attempt INTEGER, at REAL, deadline REAL);"
        )

    def received(self, service: str, command: str, order_id: str, ctx: Context) -> None:
        self._db.execute(
            "INSERT INTO received VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            _received(service, command, order_id, ctx),
        )

    def all_received(self) -> list[Received]:
        rows = self._db.execute("SELECT * FROM received ORDER BY at")
        return [Received(*row) for row in rows]

    def apply(self, service: str, effect: str, order_id: str, key: str) -> None:
        with self._db:  # one transaction: the run and, the first time, the effect
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT INTO runs VALUES (?)", (key,))
            self._db.execute(
                "INSERT OR IGNORE INTO effects VALUES (?, ?, ?, ?)",
                (service, effect, order_id, key),
            )

    def of(self, order_id: str) -> list[str]:
        rows = self._db.execute(
            "SELECT service || '.' || effect FROM effects WHERE order_id = ?", (order_id,)
        )
        return sorted(r[0] for r in rows)

    def all(self) -> Counter[tuple[str, str, str]]:
        return Counter(self._db.execute("SELECT service, effect, order_id FROM effects"))

    def cancel_shipment(self, order_id: str) -> None:
        self._db.execute("INSERT OR IGNORE INTO marks VALUES (?)", (f"cancelled:{order_id}",))

    def shipment_cancelled(self, order_id: str) -> bool:
        found = self._db.execute("SELECT 1 FROM marks WHERE key = ?", (f"cancelled:{order_id}",))
        return found.fetchone() is not None

    def first_try(self, key: str) -> bool:
        return self._db.execute("INSERT OR IGNORE INTO marks VALUES (?)", (key,)).rowcount == 1


def _received(service: str, command: str, order_id: str, ctx: Context) -> Received:
    deadline = ctx.deadline.timestamp() if ctx.deadline is not None else None
    return Received(
        service, command, order_id, ctx.saga_id, ctx.kind, ctx.attempt, time.time(), deadline
    )


def build_services(ledger: Ledger, clock: Clock, outages: Outages | None = None) -> list[Service]:
    """The inventory, payments, loyalty and shipping services over one ledger.

    ``outages`` takes any of them down (none by default).
    """
    door = _Door(ledger, outages or Outages(), clock)
    return [
        _inventory(ledger, door),
        _payments(ledger, door),
        _loyalty(ledger, door),
        _shipping(ledger, door, clock),
    ]


class _Door:
    """What every handler does first: count the command as received, then find
    out whether its service is down (the switch of :class:`Outages`)."""

    def __init__(self, ledger: Ledger, outages: Outages, clock: Clock) -> None:
        self._ledger, self._outages, self._clock = ledger, outages, clock

    async def enter(self, service: str, command: str, order_id: str, ctx: Context) -> None:
        self._ledger.received(service, command, order_id, ctx)
        await self._outages.check(service, self._clock)


def _inventory(ledger: Ledger, door: _Door) -> Service:
    inventory = Service("inventory")

    @inventory.handles(Reserve)
    async def reserve(cmd: Reserve, ctx: Context) -> Reserved:
        await door.enter("inventory", "Reserve", cmd.order_id, ctx)
        for line in cmd.lines:
            if line.sku == "out-of-stock":
                raise OutOfStock(f"sku {line.sku!r} is out of stock")
        ledger.apply("inventory", "reserve", cmd.order_id, ctx.idempotency_key)
        return Reserved(hold_id=f"hold-{cmd.order_id}")

    @inventory.handles(Release)
    async def release(cmd: Release, ctx: Context) -> None:
        await door.enter("inventory", "Release", cmd.order_id, ctx)
        ledger.apply("inventory", "release", cmd.order_id, ctx.idempotency_key)

    return inventory


def _payments(ledger: Ledger, door: _Door) -> Service:
    payments = Service("payments")

    @payments.handles(Charge)
    async def charge(cmd: Charge, ctx: Context) -> Charged:
        await door.enter("payments", "Charge", cmd.order_id, ctx)
        if cmd.card == "declined":
            raise CardDeclined("the card was declined")
        if cmd.card == "flaky" and ledger.first_try(f"flaky:{cmd.order_id}"):
            raise GatewayTimeout("the card network did not answer")
        ledger.apply("payments", "charge", cmd.order_id, ctx.idempotency_key)
        return Charged(charge_id=f"ch-{cmd.order_id}")

    @payments.handles(Refund)
    async def refund(cmd: Refund, ctx: Context) -> None:
        await door.enter("payments", "Refund", cmd.order_id, ctx)
        ledger.apply("payments", "refund", cmd.order_id, ctx.idempotency_key)

    return payments


def _loyalty(ledger: Ledger, door: _Door) -> Service:
    loyalty = Service("loyalty")

    @loyalty.handles(AwardPoints)
    async def award(cmd: AwardPoints, ctx: Context) -> None:
        await door.enter("loyalty", "AwardPoints", cmd.order_id, ctx)
        ledger.apply("loyalty", "award", cmd.order_id, ctx.idempotency_key)

    @loyalty.handles(RevokePoints)
    async def revoke(cmd: RevokePoints, ctx: Context) -> None:
        await door.enter("loyalty", "RevokePoints", cmd.order_id, ctx)
        ledger.apply("loyalty", "revoke", cmd.order_id, ctx.idempotency_key)

    return loyalty


def _shipping(ledger: Ledger, door: _Door, clock: Clock) -> Service:
    shipping = Service("shipping")

    @shipping.handles(BookShipment)
    async def book(cmd: BookShipment, ctx: Context) -> Booked:
        await door.enter("shipping", "BookShipment", cmd.order_id, ctx)
        if cmd.shipper == "slow":
            await clock.sleep(timedelta(seconds=SLOW_SHIPPER_SECONDS))
        # A cancellation that overtook this booking left a tombstone: do not apply.
        if ledger.shipment_cancelled(cmd.order_id):
            raise Failure(
                "ShipmentCancelled", "the shipment was cancelled meanwhile", retryable=False
            )
        ledger.apply("shipping", "book", cmd.order_id, ctx.idempotency_key)
        return Booked(tracking_number=f"trk-{cmd.order_id}")

    @shipping.handles(CancelShipment)
    async def cancel(cmd: CancelShipment, ctx: Context) -> None:
        await door.enter("shipping", "CancelShipment", cmd.order_id, ctx)
        ledger.cancel_shipment(cmd.order_id)
        ledger.apply("shipping", "cancel", cmd.order_id, ctx.idempotency_key)

    return shipping
