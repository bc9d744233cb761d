"""Orders to run through the example saga, and the checker of the invariants.

Each order has a *kind* that decides, through its input alone, how the example
participants behave and so what the saga must end as and which effects the
participants' ledger must hold afterwards (reliability.md, I1-I6):

- every saga ends in the status its input calls for;
- each (service, effect, order) is applied at most once;
- a completed order has exactly its actions, no undo; a compensated order has
  an undo for each action applied, and no action after its undo (the slow
  shipper's booking is cancelled after it ran: its cancellation waits for it);
- the history of each saga has strictly growing revisions, ending at the
  state's, and nothing changed after the terminal transition;
- at rest: the outbox is empty, no timer is left, no participant still holds
  an idempotency key, no dead letter anywhere.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from procs import Deployment, poll, retry

from coordinator import SagaClient
from coordinator.adapters.redis import RedisSagaStore
from coordinator.ports import DeadLetter

SAGA = "order.place"
TERMINAL = frozenset({"completed", "compensated", "failed", "cancelled"})

# step -> (service, action effect, undo effect) in the example's ledger
STEPS = {
    "reserve": ("inventory", "reserve", "release"),
    "charge": ("payments", "charge", "refund"),
    "points": ("loyalty", "award", "revoke"),
    "ship": ("shipping", "book", "cancel"),
}


@dataclass(frozen=True)
class Order:
    """One order; ``kind`` is plain, declined, out_of_stock, flaky, large or slow."""

    id: str
    kind: str
    member: bool = False

    def input(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "order_id": self.id,
            "lines": [{"sku": "A-1", "quantity": 2}],
            "total_cents": 4_500,
        }
        if self.member:
            data["member_id"] = f"m-{self.id}"
        match self.kind:
            case "declined":
                data["card"] = "declined"
            case "out_of_stock":
                data["lines"] = [{"sku": "out-of-stock", "quantity": 1}]
            case "flaky":
                data["card"] = "flaky"
            case "large":
                data["total_cents"] = 250_000
            case "slow":
                data["shipper"] = "slow"
        return data

    @property
    def expected_status(self) -> str:
        return "compensated" if self.kind in ("declined", "out_of_stock", "slow") else "completed"

    def expected_effects(self) -> Counter[tuple[str, str, str]]:
        """Exactly what the ledger must hold for this order."""
        steps: list[str] = []
        undone: list[str] = []
        match self.kind:
            case "plain" | "flaky" | "large":
                steps = ["reserve", "charge", "ship"]
            case "declined":  # charge applied nothing; points ran in parallel with it
                steps = undone = ["reserve"]
            case "out_of_stock":
                steps = undone = []
            case "slow":  # the cancellation waits for the slow booking, then undoes it
                steps, undone = ["reserve", "charge", "ship"], ["reserve", "charge"]
        if self.member and self.kind != "out_of_stock":
            steps = [*steps, "points"]
            if undone or self.kind == "declined":
                undone = [*undone, "points"]
        effects: Counter[tuple[str, str, str]] = Counter()
        for step in steps:
            service, do, _undo = STEPS[step]
            effects[(service, do, self.id)] += 1
        for step in undone:
            service, _do, undo = STEPS[step]
            effects[(service, undo, self.id)] += 1
        if self.kind == "slow":  # the timed-out booking owes its cancellation
            effects[("shipping", "cancel", self.id)] += 1
        return effects


def make_orders(mix: Mapping[str, int], *, prefix: str = "o", seed: int = 7) -> list[Order]:
    """``mix`` maps kind -> count; about half the orders are loyalty members. Shuffled."""
    rng = random.Random(seed)
    orders = [
        Order(f"{prefix}-{kind}-{i}", kind, member=rng.random() < 0.5)
        for kind, count in mix.items()
        for i in range(count)
    ]
    rng.shuffle(orders)
    return orders


def mix_of(total: int, **shares: float) -> dict[str, int]:
    """Counts per kind from shares of ``total``; ``plain`` takes what is left."""
    counts = {kind: round(total * share) for kind, share in shares.items()}
    counts["plain"] = total - sum(counts.values())
    return counts


# -- running ------------------------------------------------------------------------


class Run:
    """Starts orders, approves the large ones once they wait, waits for all to end."""

    def __init__(self, client: SagaClient, orders: Sequence[Order], *, concurrency: int = 32):
        self.client = client
        self.orders = list(orders)
        self.by_id = {o.id: o for o in self.orders}
        self.concurrency = concurrency
        self.states: dict[str, dict[str, Any]] = {}
        self.approved: set[str] = set()
        self.started_at = time.monotonic()

    async def start_all(self, *, timeout: float = 120, pace: float = 0.0) -> None:
        """Start every order, ``concurrency`` at a time, or one every ``pace`` seconds."""
        sem = asyncio.Semaphore(self.concurrency)

        async def one(order: Order, delay: float = 0.0) -> None:
            await asyncio.sleep(delay)
            async with sem:
                await retry(
                    f"starting {order.id}",
                    lambda: self.client.start(SAGA, order.input(), order.id),
                    timeout=timeout,
                )

        # The client connects on its first publish, and concurrent first publishes
        # each open a connection of their own and leak all but one (see
        # test_client.py): one start alone first.
        await one(self.orders[0])
        await asyncio.gather(*(one(o, i * pace) for i, o in enumerate(self.orders[1:], 1)))

    async def _read(self, saga_id: str) -> dict[str, Any] | None:
        try:
            return await self.client.get(saga_id)
        except Exception:  # Redis restarting: read it next round
            return None

    async def refresh(self) -> None:
        pending = [
            o.id for o in self.orders if self.states.get(o.id, {}).get("status") not in TERMINAL
        ]
        for i in range(0, len(pending), 64):
            chunk = pending[i : i + 64]
            found = await asyncio.gather(*(self._read(s) for s in chunk))
            for saga_id, state in zip(chunk, found, strict=True):
                if state is not None:
                    self.states[saga_id] = state

    async def _approve_waiting(self) -> None:
        for order in self.orders:
            if order.kind != "large" or order.id in self.approved:
                continue
            state = self.states.get(order.id)
            if state is None:
                continue
            if state["steps"].get("approval", {}).get("status") == "waiting":
                try:
                    await self.client.signal(order.id, "approval", {"approved": True, "by": "e2e"})
                except Exception:  # the broker is restarting: next round
                    continue
                self.approved.add(order.id)

    def unfinished(self) -> list[str]:
        return [
            o.id for o in self.orders if self.states.get(o.id, {}).get("status") not in TERMINAL
        ]

    def finished(self) -> int:
        return len(self.orders) - len(self.unfinished())

    async def wait_until(self, finished: int, *, timeout: float) -> None:
        """Poll (approving as it goes) until at least ``finished`` sagas have ended."""

        async def probe() -> bool | None:
            await self.refresh()
            await self._approve_waiting()
            return True if self.finished() >= finished else None

        await poll(
            f"{finished} of {len(self.orders)} sagas to end",
            probe,
            timeout=timeout,
            interval=0.3,
            describe=self.describe_unfinished,
        )

    async def wait_all(self, *, timeout: float) -> float:
        """Until every saga has ended; returns the seconds since the run began."""
        await self.wait_until(len(self.orders), timeout=timeout)
        return time.monotonic() - self.started_at

    def describe_unfinished(self) -> str:
        lines = []
        for saga_id in self.unfinished()[:15]:
            state = self.states.get(saga_id)
            if state is None:
                lines.append(f"  {saga_id}: not found in Redis")
                continue
            steps = {
                n: (s.get("status", "pending"), s.get("attempt", 0))
                for n, s in state["steps"].items()
            }
            lines.append(f"  {saga_id} ({self.by_id[saga_id].kind}): {state['status']} {steps}")
        counts = Counter(self.states.get(s, {}).get("status", "missing") for s in self.unfinished())
        return f"unfinished by status: {dict(counts)}\n" + "\n".join(lines)


# -- checking -----------------------------------------------------------------------


def check_outcomes(
    orders: Iterable[Order],
    states: Mapping[str, Mapping[str, Any]],
    effects: Sequence[tuple[str, str, str]],
) -> list[str]:
    """Every violated invariant about statuses and effects, one line each.

    ``effects`` are the ledger's rows in the order they were applied.
    """
    problems: list[str] = []
    position: dict[tuple[str, str, str], int] = {}
    ledger: Counter[tuple[str, str, str]] = Counter()
    for i, row in enumerate(effects):
        ledger[row] += 1
        position.setdefault(row, i)
    known: set[str] = set()
    for order in orders:
        known.add(order.id)
        state = states.get(order.id) or {}
        status = state.get("status", "missing")
        if status != order.expected_status:
            reason = state.get("reason")
            problems.append(
                f"{order.id} ({order.kind}): ended {status}, expected {order.expected_status}"
                + (f" - {reason}" if reason else "")
            )
        got = Counter({k: n for k, n in ledger.items() if k[2] == order.id})
        # Two rows need two keys (the effects table keeps one row per key): this catches
        # an effect applied under two keys; a handler re-run for one key is caught by
        # the runs table in check_at_rest.
        twice = sorted(f"{s}.{e}x{n}" for (s, e, _), n in got.items() if n > 1)
        if twice:
            problems.append(f"{order.id} ({order.kind}): applied more than once: {twice}")
        steps = state.get("steps", {})
        unknown = {name for name, step in steps.items() if step.get("unknown")}
        label = f"{order.id} ({order.kind}, member={order.member}, {status})"
        if status == order.expected_status and not unknown:
            # The plain path: exactly the effects the input calls for.
            want = order.expected_effects()
            if got != want:
                problems.append(f"{label}: effects {_fmt(got)}, expected {_fmt(want)}")
        else:
            problems += _owed_undos(label, order.id, status, got, unknown)
        for service, do, undo in STEPS.values():
            first_do, first_undo = (
                position.get((service, do, order.id)),
                position.get((service, undo, order.id)),
            )
            if first_do is not None and first_undo is not None and first_do > first_undo:
                problems.append(f"{label}: {service}.{do} applied after its undo {service}.{undo}")
    strays = sorted({k[2] for k in ledger} - known)
    if strays:
        problems.append(f"effects for orders never started: {strays[:10]}")
    return problems


def _owed_undos(
    label: str,
    order_id: str,
    status: str,
    got: Counter[tuple[str, str, str]],
    unknown: set[str],
) -> list[str]:
    """Undos checked step by step, when the outcome is not the input's plain one."""
    problems = []
    for step, (service, do, undo) in STEPS.items():
        did, undid = got[(service, do, order_id)], got[(service, undo, order_id)]
        if status == "completed" and undid:
            problems.append(f"{label}: {service}.{undo} applied in a completed saga")
        elif status in ("compensated", "cancelled"):
            # The undo is owed for what was applied and for what may have been
            # (an attempt timed out: outcome unknown), and for nothing else.
            owed = 1 if did or step in unknown else 0
            if undid != owed:
                problems.append(
                    f"{label}: {service}.{undo} applied {undid} times, owed {owed} "
                    f"({service}.{do} applied {did}, unknown={step in unknown})"
                )
    return problems


def _fmt(effects: Counter[tuple[str, str, str]]) -> list[str]:
    return sorted(f"{s}.{e}" + (f"x{n}" if n > 1 else "") for (s, e, _), n in effects.items())


def ledger_rows(path: str) -> list[tuple[str, str, str]]:
    """The participants' effects in the order they were applied."""
    db = sqlite3.connect(path, timeout=30)
    try:
        rows = db.execute("SELECT service, effect, order_id FROM effects ORDER BY rowid").fetchall()
    finally:
        db.close()
    return [(str(a), str(b), str(c)) for a, b, c in rows]


def ledger_runs(path: str) -> Counter[str]:
    """How many times a handler applying an effect ran, per idempotency key."""
    db = sqlite3.connect(path, timeout=30)
    try:
        rows = db.execute("SELECT key FROM runs").fetchall()
    finally:
        db.close()
    return Counter(str(k) for (k,) in rows)


async def check_histories(
    store: RedisSagaStore, states: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """Revisions grow by one per changed input, end at the state's, nothing after the end."""
    problems: list[str] = []
    for saga_id, state in states.items():
        entries = await store.history(saga_id)
        changed = [e for e in entries if e.changed]
        revisions = [e.revision for e in changed]
        # Consecutive from the start: a lost or doubled history line shows as a gap.
        if revisions != list(range(1, state["revision"] + 1)):
            problems.append(
                f"{saga_id}: revisions of changed entries {revisions}, state {state['revision']}"
            )
        ends = [i for i, e in enumerate(changed) if _ends(e)]
        if ends and ends[0] != len(changed) - 1:
            problems.append(
                f"{saga_id}: changed after its end: {[e.note for e in changed[ends[0] :]]}"
            )
    return problems


def _ends(entry: Any) -> bool:
    """The entry that ended the saga: it turned terminal there."""
    return entry.status_before not in TERMINAL and entry.status_after in TERMINAL


def history_inputs(entries: Sequence[Any]) -> list[tuple[dict[str, Any], bool, str]]:
    """``(decoded input, changed, note)`` for each history entry."""
    return [(msgspec.json.decode(e.input), e.changed, e.note) for e in entries]


async def check_at_rest(
    deployment: Deployment,
    client: SagaClient,
    run: Run,
    *,
    settle: float = 30,
    may_rerun: Iterable[str] = (),
    expect_dead: Mapping[str, tuple[str, str]] | None = None,
) -> None:
    """Assert every invariant once all sagas have ended (I1-I6).

    A handler runs once per idempotency key, except for the keys in
    ``may_rerun``: those a participant held when it was killed. The dead
    letters are exactly ``expect_dead`` (message id -> (queue, reason)), the
    ones the test put there, and none when it is not given.
    """
    problems = check_outcomes(run.orders, run.states, ledger_rows(str(deployment.ledger_path)))
    allowed = {k.strip("{}") for k in may_rerun}
    reruns = {k: n for k, n in ledger_runs(str(deployment.ledger_path)).items() if n > 1}
    problems += [f"handler ran {n} times for {k}" for k, n in reruns.items() if k not in allowed]
    problems += await check_histories(client.store, run.states)

    # The outbox is emptied right after each commit, or by the relay within seconds;
    # every timer is cancelled or fired by the time a saga ends.
    store = client.store

    async def empty() -> bool | None:
        return True if await store.outbox_size() == 0 and await store.timer_count() == 0 else None

    try:
        await poll("the outbox and the timers to be empty", empty, timeout=settle)
    except AssertionError:
        problems.append(
            f"at rest: outbox holds {await store.outbox_size()} entries, "
            f"{await store.timer_count()} timers left"
        )
    # Participants hold a key only while its handler runs, and a killed one's
    # hold lapses within the lease; the slow shipper's first bookings sleep
    # 60 s, longer than their sagas take.
    slow = {f"{o.id}:ship:action" for o in run.orders if o.kind == "slow"}

    async def held() -> list[str]:
        return [k for k in await deployment.claims() if k.strip("{}") not in slow]

    async def released() -> bool | None:
        return True if not await held() else None

    try:
        await poll("the participants to release their keys", released, timeout=settle)
    except AssertionError:
        still = await held()
        problems.append(f"at rest: participants still hold {len(still)} keys: {still[:10]}")
    problems += check_dead_letters(await deployment.dead_letters(), expect_dead or {})
    if problems:
        shown = "\n".join(problems[:60])
        more = f"\n... and {len(problems) - 60} more" if len(problems) > 60 else ""
        raise AssertionError(f"{len(problems)} invariant violations:\n{shown}{more}")


def check_dead_letters(
    dead: Mapping[str, Sequence[DeadLetter]], expect: Mapping[str, tuple[str, str]]
) -> list[str]:
    """The dead letters are exactly ``expect``: message id -> (queue, reason)."""
    problems: list[str] = []
    expected = dict(expect)
    for queue, letters in dead.items():
        unexpected: list[DeadLetter] = []
        for letter in letters:
            want = expected.pop(letter.message_id, None)
            if want is None:
                unexpected.append(letter)
            elif want != (queue, letter.reason):
                problems.append(
                    f"dead letter {letter.message_id} in {queue} ({letter.reason}: "
                    f"{letter.detail[:200]}), expected in {want[0]} as {want[1]}"
                )
        for letter in unexpected[:5]:
            detail = letter.detail[:300]
            problems.append(
                f"dead letter in {queue}: {letter.message_id} {letter.reason}: {detail}"
            )
        if len(unexpected) > 5:
            problems.append(f"... {len(unexpected)} unexpected dead letters in {queue}")
    problems += [
        f"not dead-lettered: {m} (expected in {q} as {r})" for m, (q, r) in expected.items()
    ]
    return problems
