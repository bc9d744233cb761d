"""Plumbing shared by the benchmark: settings, processes, CPU, AMQP and Redis helpers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import aiormq
import psutil
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "results"
LOGS = RESULTS / "logs"


@dataclass(frozen=True)
class Config:
    amqp_url: str
    redis_url: str
    retention: int  # seconds a finished saga is kept (SAGA_RETENTION, floor TTL, Celery expiry)
    participants: int = 1
    celery_pool: str = "prefork"
    celery_concurrency: int = 2
    celery_prefetch: int = 8
    ns_prefix: str = "bn"
    event_loop: str = "auto"  # SAGA_EVENT_LOOP of ours, --loop of the floor: the same for both
    baseline: str = ""  # a source tree that ours-base runs from (an earlier commit)


def new_namespace(cfg: Config) -> str:
    """A fresh namespace; always the same length, so key sizes compare fairly."""
    return f"{cfg.ns_prefix}{uuid.uuid4().hex[:8]}"


# -- processes ---------------------------------------------------------------------------


@dataclass
class Proc:
    role: str  # coordinator | participant | worker
    popen: subprocess.Popen[bytes]
    log: Path
    wrapper: bool = False  # the root is py-spy: measure its children only

    def targets(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.popen.pid)
            children = root.children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        return children if self.wrapper else [root, *children]

    def cpu(self) -> tuple[float, float]:
        """(user, system) CPU seconds of the process (and its children)."""
        return cpu_of(self.targets())

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def python_pid(self) -> int:
        if self.wrapper:
            kids = self.targets()
            return kids[0].pid if kids else self.popen.pid
        return self.popen.pid


def launch(
    role: str, argv: Sequence[str], env: dict[str, str], name: str, *, wrapper: bool = False
) -> Proc:
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{name}.log"
    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        popen = subprocess.Popen(
            list(argv), cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT
        )
    return Proc(role, popen, log, wrapper)


async def stop_procs(procs: Iterable[Proc], timeout: float = 15.0) -> None:
    procs = list(procs)
    for p in procs:
        if p.alive():
            # A py-spy wrapper: stop the profiled child, py-spy then writes its file and exits.
            pids = [k.pid for k in p.targets()] if p.wrapper else [p.popen.pid]
            for pid in pids[:1]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in procs:
        while p.alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if p.alive():
            p.popen.kill()
            p.popen.wait()


def server_processes() -> dict[str, list[psutil.Process]]:
    """The broker and Redis processes on this machine, found by name (shared with anyone)."""
    found: dict[str, list[psutil.Process]] = {"broker": [], "redis": []}
    for p in psutil.process_iter(["name", "cmdline"]):
        name = p.info["name"] or ""
        if name.startswith("beam.smp") or name == "beam":
            found["broker"].append(p)
        elif name.startswith("redis-server"):
            found["redis"].append(p)
    return found


def cpu_of(processes: Iterable[psutil.Process]) -> tuple[float, float]:
    user = system = 0.0
    for p in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            t = p.cpu_times()
            user += t.user
            system += t.system
    return user, system


@dataclass
class CpuSnapshot:
    at: float
    roles: dict[str, float] = field(default_factory=dict)  # user + system
    system: dict[str, float] = field(default_factory=dict)  # system (kernel) only


def snapshot(procs: Sequence[Proc], servers: dict[str, list[psutil.Process]]) -> CpuSnapshot:
    snap = CpuSnapshot(time.perf_counter())
    found: list[tuple[str, tuple[float, float]]] = [(p.role, p.cpu()) for p in procs]
    found += [(role, cpu_of(ps)) for role, ps in servers.items()]
    found.append(("driver", cpu_of([psutil.Process()])))
    for role, (user, system) in found:
        snap.roles[role] = snap.roles.get(role, 0.0) + user + system
        snap.system[role] = snap.system.get(role, 0.0) + system
    return snap


# -- AMQP ------------------------------------------------------------------------------


async def consumer_count(connection: aio_pika.abc.AbstractConnection, queue: str) -> int:
    channel = await connection.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
        result = declared.declaration_result
        return int(result.consumer_count or 0)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return 0
    finally:
        with contextlib.suppress(Exception):
            await channel.close()


async def message_count(connection: aio_pika.abc.AbstractConnection, queue: str) -> int:
    channel = await connection.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return 0
    finally:
        with contextlib.suppress(Exception):
            await channel.close()


async def delete_amqp(
    connection: aio_pika.abc.AbstractConnection, queues: Iterable[str], exchanges: Iterable[str]
) -> None:
    channel = await connection.channel()
    try:
        for q in queues:
            with contextlib.suppress(Exception):
                await channel.queue_delete(q, if_unused=False, if_empty=False)
        for e in exchanges:
            with contextlib.suppress(Exception):
                await channel.exchange_delete(e)
    finally:
        with contextlib.suppress(Exception):
            await channel.close()


# -- Redis -----------------------------------------------------------------------------


async def scan_keys(redis: Redis, pattern: str) -> list[bytes]:
    return [k async for k in redis.scan_iter(match=pattern, count=2000)]


async def key_bytes(redis: Redis, keys: Sequence[bytes | str]) -> int:
    """Exact bytes of ``keys`` (``MEMORY USAGE ... SAMPLES 0``), pipelined."""
    total = 0
    for i in range(0, len(keys), 1000):
        pipe = redis.pipeline(transaction=False)
        for k in keys[i : i + 1000]:
            pipe.execute_command("MEMORY", "USAGE", k, "SAMPLES", "0")
        total += sum(int(v or 0) for v in await pipe.execute())
    return total


async def unlink(redis: Redis, keys: Sequence[bytes | str]) -> None:
    for i in range(0, len(keys), 1000):
        await redis.unlink(*keys[i : i + 1000])


async def used_memory(redis: Redis) -> int:
    info = await redis.info("memory")
    return int(info["used_memory"])


# -- statistics ------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def ensure_running(procs: Sequence[Proc]) -> None:
    for p in procs:
        if not p.alive():
            raise RuntimeError(
                f"{p.role} process exited with {p.popen.returncode}; log {p.log}:\n{p.tail()}"
            )
