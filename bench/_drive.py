"""The closed-loop driver and the Redis memory probe.

Closed loop at in-flight level L: L slots; a saga takes one when its start is
published and gives it back when its end is seen, so L sagas are in flight in
the steady state. The slots open gradually over the first half of the
warm-up, so that the sagas do not march through their steps in one wave.

The window opens at a completion once the warm-up time has passed and every
slot has turned over at least once, and closes at a later completion once
``window`` seconds have passed and a whole number of turnovers (a multiple of
L completions) has been seen. Whole turnovers keep the measurement honest
even if sagas still move in waves: both edges sit at the same phase. CPU of
every process is read at the two edges; the sagas that finished inside give
the throughput and the latencies.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import Any

import psutil

from bench._infra import CpuSnapshot, percentile, snapshot, used_memory
from bench._systems import System


def _ms(x: float | None) -> float | None:
    return None if x is None else x * 1000.0


class _Loop:
    def __init__(
        self,
        system: System,
        level: int,
        servers: dict[str, list[psutil.Process]],
        warmup: float,
        window: float,
    ) -> None:
        self.system = system
        self.level = level
        self.servers = servers
        self.window = window
        self.began = time.perf_counter()
        self.warm_at = self.began + warmup
        self.slots = asyncio.Semaphore(0)
        self.started: dict[str, float] = {}
        self.order: list[str] = []  # completions, in order
        self.done: dict[str, float] = {}
        self.failed: set[str] = set()
        self.errors: list[str] = []
        self.start: CpuSnapshot | None = None
        self.end: CpuSnapshot | None = None
        self.c0 = 0
        self.over = asyncio.Event()

    def on_done(self, saga_id: str, ok: bool) -> None:
        if saga_id not in self.started or saga_id in self.done:
            return
        now = time.perf_counter()
        self.done[saga_id] = now
        self.order.append(saga_id)
        if not ok:
            self.failed.add(saga_id)
        self.slots.release()
        if self.start is None:
            if now >= self.warm_at and len(self.order) >= self.level:
                self.start = snapshot(self.system.procs, self.servers)
                self.c0 = len(self.order)
        elif self.end is None:
            n = len(self.order) - self.c0
            elapsed = now - self.start.at
            whole = n % self.level == 0 or (elapsed >= 3 * self.window and n >= self.level)
            if elapsed >= self.window and n > 0 and whole:
                self.end = snapshot(self.system.procs, self.servers)
                self.over.set()

    def stop(self, why: str) -> None:
        self.errors.append(why)
        if self.start is None:
            self.start = snapshot(self.system.procs, self.servers)
            self.c0 = len(self.order)
        if self.end is None:
            self.end = snapshot(self.system.procs, self.servers)
        self.over.set()

    async def ramp(self, seconds: float) -> None:
        for _ in range(self.level):
            self.slots.release()
            await asyncio.sleep(seconds / self.level)

    async def watch(self, stall: float) -> None:
        """Give up on a run that stopped moving (a broken build, a dead process)."""
        while not self.over.is_set():
            last = self.done[self.order[-1]] if self.order else self.began
            if time.perf_counter() - last > stall:
                self.stop(f"stalled: no saga finished for {stall:.0f}s ({len(self.order)} done)")
            elif not all(p.alive() for p in self.system.procs):
                self.stop("a process died")
            await asyncio.sleep(0.1)

    async def publish(self, saga_id: str) -> None:
        try:
            await self.system.start(saga_id)
        except Exception as exc:
            self.errors.append(f"start {saga_id}: {exc!r}")
            self.started.pop(saga_id, None)
            self.slots.release()


async def closed_loop(
    system: System,
    level: int,
    *,
    warmup: float,
    window: float,
    servers: dict[str, list[psutil.Process]],
    latency_sample: int,
    stall: float = 30.0,
) -> dict[str, Any]:
    loop = _Loop(system, level, servers, warmup, window)
    await system.open(loop.on_done)
    helpers = [
        asyncio.create_task(loop.ramp(warmup / 2)),
        asyncio.create_task(loop.watch(stall)),
    ]
    over = asyncio.create_task(loop.over.wait())
    publishing: set[asyncio.Task[None]] = set()
    while True:
        acquire = asyncio.ensure_future(loop.slots.acquire())
        await asyncio.wait([acquire, over], return_when=asyncio.FIRST_COMPLETED)
        if over.done():
            acquire.cancel()
            break
        saga_id = uuid.uuid4().hex
        loop.started[saga_id] = time.perf_counter()
        task = asyncio.create_task(loop.publish(saga_id))
        publishing.add(task)
        task.add_done_callback(publishing.discard)
    for helper in helpers:
        helper.cancel()
    if publishing:
        await asyncio.gather(*publishing)
    # No drain: the window is over; sagas still in flight die with the namespace.
    result = await _summary(loop, latency_sample)
    result["errors"] = loop.errors
    return result


async def _summary(loop: _Loop, latency_sample: int) -> dict[str, Any]:
    a, b = loop.start, loop.end
    assert a is not None and b is not None
    span = b.at - a.at
    inside = loop.order[loop.c0 :]
    finished = [sid for sid in inside if loop.done[sid] <= b.at and sid not in loop.failed]
    count = len(finished)
    saga_lat = [loop.done[sid] - loop.started[sid] for sid in finished]
    sample = random.sample(finished, min(latency_sample, count))
    step_lat = await loop.system.step_latencies(sample)
    spent = {r: b.roles[r] - a.roles.get(r, 0.0) for r in b.roles}
    cpu: dict[str, float | None] = {
        r: v / count * 1000.0 if count else None for r, v in spent.items()
    }
    cpu["total"] = sum(v for r, v in cpu.items() if v is not None and r != "driver")
    kernel = {
        r: (b.system[r] - a.system.get(r, 0.0)) / spent[r] if spent[r] > 0 else None
        for r in b.system
    }
    system = loop.system
    return {
        "system": system.name,
        "level": loop.level,
        "replicas": system.replicas,
        "warmup_s": a.at - loop.began,
        "window_s": span,
        "completed_in_window": count,
        "sagas_started": len(loop.started),
        "sagas_per_s": count / span if span else None,
        "steps_per_s": count * system.steps_per_saga / span if span else None,
        "step_p50_ms": _ms(percentile(step_lat, 0.50)),
        "step_p99_ms": _ms(percentile(step_lat, 0.99)),
        "step_samples": len(step_lat),
        "saga_p50_ms": _ms(percentile(saga_lat, 0.50)),
        "saga_p99_ms": _ms(percentile(saga_lat, 0.99)),
        "cpu_ms_per_saga": cpu,
        "cpu_kernel_share": kernel,
        "failed": len(loop.failed),
        "_finished": [sid for sid in loop.order if sid not in loop.failed],
    }


async def completed_memory(
    system: System, finished: list[str], sample: int = 200
) -> dict[str, Any]:
    """What a finished saga keeps in Redis (its own keys, exact, plus its share
    of shared keys such as indexes), and for how long (the TTLs)."""
    if not finished:
        return {"completed_bytes_per_saga": None, "completed_ttl_s": {}}
    picked = random.sample(finished, min(sample, len(finished)))
    own = await system.saga_bytes(picked)
    shared = await system.shared_bytes_per_saga()
    return {
        "completed_bytes_per_saga": own / len(picked) + shared,
        "completed_shared_bytes_per_saga": shared,
        "completed_ttl_s": await system.ttls(picked[0]),
    }


async def memory_probe(system: System, sagas: int, redis: Any) -> dict[str, Any]:
    """Bytes per in-flight saga at its first and at its last step.

    The coordinator alone takes ``sagas`` starts (step 1's commands wait in the
    queue): the first point. Then a participant answering all but the last step
    runs: every saga waits for its last reply, its history and dedupe records
    at their largest: the worst in-flight point.
    """
    await system.launch(participants=None)
    await system.open(lambda _sid, _ok: None)
    base = await used_memory(system.redis)
    before = await system.memory()
    ids = [uuid.uuid4().hex for _ in range(sagas)]
    for i in range(0, len(ids), 256):
        await asyncio.gather(*(system.start(sid) for sid in ids[i : i + 256]))
    await system.wait_point(ids, "first")
    first = await system.memory()
    used_first = await used_memory(system.redis)
    await system.launch_participants("hold")
    await system.wait_point(ids, "last")
    last = await system.memory()
    used_last = await used_memory(system.redis)

    def per(m: dict[str, int], part: str) -> float:
        return (m[part] - before[part]) / sagas

    return {
        "system": system.name,
        "sagas": sagas,
        "first_bytes": per(first, "coordinator") + per(first, "participants"),
        "worst_bytes": per(last, "coordinator") + per(last, "participants"),
        "worst_coordinator_bytes": per(last, "coordinator"),
        "worst_participant_bytes": per(last, "participants"),
        "used_memory_first": (used_first - base) / sagas,
        "used_memory_worst": (used_last - base) / sagas,
        "keys_per_saga": (last["keys"] - before["keys"]) / sagas,
    }
