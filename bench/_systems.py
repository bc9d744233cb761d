"""The systems under test: how each is started, fed, watched and cleaned up.

Every system gets a fresh namespace per measurement, its own processes, and is
torn down (processes stopped, queues, exchanges and Redis keys deleted) after.
The driver starts sagas with ``start`` and learns of their end through the
``on_done`` callback it passes to ``open``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import time
import zlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import msgspec
from redis.asyncio import Redis

from bench import floor, saga3
from bench._infra import (
    BIN,
    Config,
    Proc,
    consumer_count,
    delete_amqp,
    ensure_running,
    key_bytes,
    launch,
    new_namespace,
    scan_keys,
    stop_procs,
    unlink,
)
from contracts import DEFAULT_CODEC, StartSaga, routes

OnDone = Callable[[str, bool], None]

# `saga` of whichever source tree is first on the path: the venv's `saga` script
# names the entry point of the installed tree, which a --baseline tree from
# before the CLI moved to coordinator.cli does not have.
_SAGA_MAIN = """
import sys
sys.argv[0] = "saga"
try:
    from coordinator.cli import main
except ImportError:
    from coordinator._cli import main
main()
"""
BUCKETS = 16  # SAGA_BUCKETS' default
_EXCHANGES = ("commands", "events", "lifecycle", "dead")
_QUEUES = (routes.EVENTS_QUEUE, routes.commands_queue("bench"))


class _Lifecycle(msgspec.Struct):
    saga_id: str
    event: str


_lifecycle = msgspec.json.Decoder(_Lifecycle)
_floor_msg = msgspec.json.Decoder(floor.Msg)
_floor_enc = msgspec.json.Encoder()


def _data(saga_id: str) -> dict[str, Any]:
    return {"order_id": saga_id, "amount": 100}


def _persistent(body: bytes, message_id: str) -> aio_pika.Message:
    return aio_pika.Message(
        body,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message_id,
    )


class System:
    """One system under test in one namespace."""

    name = "?"
    steps_per_saga = 3

    def __init__(
        self,
        cfg: Config,
        connection: aio_pika.abc.AbstractConnection,
        redis: Redis,
        *,
        replicas: int = 1,
        wrap: tuple[str, Path] | None = None,
        wrap_participant: tuple[str, Path] | None = None,
    ) -> None:
        self.cfg = cfg
        self.conn = connection
        self.redis = redis
        self.ns = new_namespace(cfg)
        self.replicas = replicas
        self.wrap = wrap
        self.wrap_participant = wrap_participant
        self.procs: list[Proc] = []
        self.lats: dict[str, list[float]] = {}
        self._channels: list[aio_pika.abc.AbstractChannel] = []

    # -- processes ---------------------------------------------------------------------

    async def launch(self, *, participants: str | None = "all") -> None:
        raise NotImplementedError

    async def launch_participants(self, variant: str) -> None:
        raise NotImplementedError

    async def _wait_consumers(self, queue: str, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while await consumer_count(self.conn, queue) < count:
            ensure_running(self.procs)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: {count} consumers of {queue} did not show up")
            await asyncio.sleep(0.1)

    # -- driving -----------------------------------------------------------------------

    async def open(self, on_done: OnDone) -> None:
        raise NotImplementedError

    async def start(self, saga_id: str) -> None:
        raise NotImplementedError

    async def step_latencies(self, saga_ids: Sequence[str]) -> list[float]:
        return [x for sid in saga_ids for x in self.lats.get(sid, ())]

    # -- memory --------------------------------------------------------------------------

    async def memory(self) -> dict[str, int]:
        """Bytes held in Redis by this namespace, by owner."""
        raise NotImplementedError

    async def ttls(self, saga_id: str) -> dict[str, int]:
        """TTL (s) of a finished saga's keys: -1 means none."""
        raise NotImplementedError

    def saga_keys(self, saga_id: str) -> list[str]:
        """The Redis keys that belong to one saga alone."""
        raise NotImplementedError

    async def saga_bytes(self, saga_ids: Sequence[str]) -> int:
        return await key_bytes(self.redis, [k for sid in saga_ids for k in self.saga_keys(sid)])

    async def shared_bytes_per_saga(self) -> float:
        """A saga's share of keys it shares with others (indexes)."""
        return 0.0

    async def wait_point(self, saga_ids: Sequence[str], point: str, timeout: float = 120) -> None:
        """Wait until every saga is at ``point``: ``first`` (step 1 sent) or ``last``."""
        raise NotImplementedError

    # -- teardown ------------------------------------------------------------------------

    async def close(self) -> None:
        await stop_procs(self.procs)
        for ch in self._channels:
            with contextlib.suppress(Exception):
                await ch.close()
        self._channels = []

    async def cleanup(self) -> None:
        ns = self.ns
        queues = [f"{ns}.{q}{d}" for q in _QUEUES for d in ("", ".dead")]
        await delete_amqp(self.conn, queues, [f"{ns}.{e}" for e in _EXCHANGES])
        await unlink(self.redis, await scan_keys(self.redis, f"{ns}:*"))

    def log_problems(self) -> list[str]:
        """Tracebacks and errors in the processes' logs (warnings are expected in probes)."""
        found = []
        for p in self.procs:
            with contextlib.suppress(OSError):
                for line in p.log.read_text(errors="replace").splitlines():
                    # Console lines say ERROR; JSON lines (the processes' format when
                    # stderr is not a terminal) say "level": "error".
                    lowered = line.lower()
                    if (
                        "Traceback" in line
                        or " ERROR " in line
                        or "CRITICAL" in line
                        or any(f'"level": "{lvl}"' in lowered for lvl in ("error", "critical"))
                    ):
                        found.append(f"{p.log.name}: {line.strip()}")
        return found


class _AmqpSystem(System):
    """Starts by publishing to ``{ns}.events``; ends are announced on ``{ns}.lifecycle``."""

    start_key = ""
    end_keys: tuple[str, ...] = ()

    async def open(self, on_done: OnDone) -> None:
        pub = await self.conn.channel(publisher_confirms=True, on_return_raises=True)
        self._events = await pub.declare_exchange(f"{self.ns}.events", "topic", durable=True)
        sub = await self.conn.channel()
        lifecycle = await sub.declare_exchange(f"{self.ns}.lifecycle", "topic", durable=True)
        queue = await sub.declare_queue("", exclusive=True, auto_delete=True)
        for key in self.end_keys:
            await queue.bind(lifecycle, key)
        self._on_done = on_done
        await queue.consume(self._ended, no_ack=True)
        self._channels += [pub, sub]

    async def _ended(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        raise NotImplementedError

    async def _wait_ready(self, participants: int) -> None:
        await self._wait_consumers(routes.address(self.ns, routes.EVENTS_QUEUE), self.replicas)
        if participants:
            await self._wait_consumers(
                routes.address(self.ns, routes.commands_queue("bench")), participants
            )


class Ours(_AmqpSystem):
    """The real ``saga run`` coordinator(s) and ``saga participant`` worker(s)."""

    name = "ours"
    start_key = routes.start_key(saga3.NAME)
    end_keys = tuple(
        routes.lifecycle_key(saga3.NAME, e)
        for e in ("completed", "compensated", "failed", "cancelled")
    )

    def env(self) -> dict[str, str]:
        return {
            "SAGA_NAMESPACE": self.ns,
            "SAGA_AMQP_URL": self.cfg.amqp_url,
            "SAGA_REDIS_URL": self.cfg.redis_url,
            "SAGA_RETENTION": f"PT{self.cfg.retention}S",
            "SAGA_IDEMPOTENCY_TTL": f"PT{self.cfg.retention}S",
            "SAGA_LOG_LEVEL": "WARNING",
            "SAGA_EVENT_LOOP": self.cfg.event_loop,
            # Metrics on, as by default, on a port of each process's own (replicas
            # share the host).
            "SAGA_HTTP": "127.0.0.1:0",
            # Breakers on, as by default (``Settings.breakers_enabled``), pinned so
            # that a change of the default cannot change what ``ours`` measures.
            "SAGA_BREAKERS_ENABLED": "true",
        }

    def _argv(self, args: list[str], wrap: tuple[str, Path] | None) -> tuple[list[str], bool]:
        saga = [str(BIN / "python"), "-c", _SAGA_MAIN]
        if wrap is None:
            return [*saga, *args], False
        kind, out = wrap
        if kind == "pyspy":
            pyspy = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy") or "py-spy"
            return [
                pyspy,
                "record",
                "--rate",
                "250",
                "--format",
                "raw",
                "--output",
                str(out),
                "--",
                *saga,
                *args,
            ], True
        return [str(BIN / "python"), "-m", "bench._wrap", f"--{kind}", str(out), "--", *args], False

    async def launch(self, *, participants: str | None = "all") -> None:
        for i in range(self.replicas):
            argv, wrapper = self._argv(["run", "--saga", "bench.saga3:saga"], self.wrap)
            self.procs.append(
                launch(
                    "coordinator", argv, self.env(), f"{self.ns}-coordinator{i}", wrapper=wrapper
                )
            )
        await self._wait_ready(0)
        if participants:
            await self.launch_participants(participants)

    async def launch_participants(self, variant: str) -> None:
        spec = "bench.saga3:services" if variant == "all" else "bench.saga3:services_hold_c"
        for i in range(self.cfg.participants):
            argv, wrapper = self._argv(["participant", spec], self.wrap_participant)
            self.procs.append(
                launch(
                    "participant", argv, self.env(), f"{self.ns}-participant{i}", wrapper=wrapper
                )
            )
        await self._wait_ready(self.cfg.participants)

    async def start(self, saga_id: str) -> None:
        message = StartSaga(
            message_id=f"start:{saga_id}",
            saga_id=saga_id,
            saga_name=saga3.NAME,
            input=_data(saga_id),
            sent_at=datetime.now(UTC),
        )
        body = DEFAULT_CODEC.encode(message)
        amqp = _persistent(body, message.message_id)
        amqp.headers = dict(self.headers(body, message.message_id))
        await self._events.publish(amqp, self.start_key, mandatory=True)

    def headers(self, body: bytes, message_id: str) -> dict[str, str]:
        """The start message's headers (a signature, for ``ours-signed``)."""
        return {}

    async def _ended(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        event = _lifecycle.decode(message.body)
        self._on_done(event.saga_id, event.event == "completed")

    def _store(self) -> Any:
        from coordinator.adapters.redis import RedisSagaStore

        return RedisSagaStore(self.redis, namespace=self.ns, buckets=BUCKETS)

    async def step_latencies(self, saga_ids: Sequence[str]) -> list[float]:
        """From the history: between the starts of handling consecutive inputs."""
        store = self._store()
        out: list[float] = []
        for sid in saga_ids:
            entries = [e for e in await store.history(sid) if e.changed]
            stamps = [e.at.timestamp() for e in sorted(entries, key=lambda e: e.revision)]
            out += [b - a for a, b in itertools.pairwise(stamps)]
        return out

    def _prefix(self, saga_id: str) -> str:
        # The store's key layout (see coordinator/adapters/redis/_store.py).
        return f"{self.ns}:{{{self.ns}.b{zlib.crc32(saga_id.encode()) % BUCKETS}}}"

    async def memory(self) -> dict[str, int]:
        keys = await scan_keys(self.redis, f"{self.ns}:*")
        coord = [k for k in keys if k.startswith(f"{self.ns}:{{".encode())]
        part = [k for k in keys if not k.startswith(f"{self.ns}:{{".encode())]
        return {
            "coordinator": await key_bytes(self.redis, coord),
            "participants": await key_bytes(self.redis, part),
            "keys": len(keys),
        }

    def saga_keys(self, saga_id: str) -> list[str]:
        p = self._prefix(saga_id)
        own = [f"{p}:{kind}:{saga_id}" for kind in "sh"]
        return own + [f"{self.ns}:reply:{{{saga_id}:{step}}}:action" for step in "abc"]

    async def shared_bytes_per_saga(self) -> float:
        keys = await scan_keys(self.redis, f"{self.ns}:*:i:*")
        members = sum([await self.redis.zcard(k) for k in keys])
        return await key_bytes(self.redis, keys) / members if members else 0.0

    async def ttls(self, saga_id: str) -> dict[str, int]:
        p = self._prefix(saga_id)
        names = {
            "state": f"{p}:s:{saga_id}",
            "history": f"{p}:h:{saga_id}",
            "index(completed)": f"{p}:i:{saga3.NAME}:completed",
            "participant reply": f"{self.ns}:reply:{{{saga_id}:a}}:action",
        }
        return {what: int(await self.redis.ttl(key)) for what, key in names.items()}

    async def wait_point(self, saga_ids: Sequence[str], point: str, timeout: float = 120) -> None:
        store = self._store()
        step = "a" if point == "first" else "c"
        deadline = time.monotonic() + timeout
        pending = list(saga_ids)
        while True:
            ensure_running(self.procs)
            still = []
            for sid in pending:
                stored = await store.load(sid)
                state = msgspec.json.decode(stored.state) if stored is not None else None
                if state is None or state["steps"][step].get("status") != "dispatched":
                    still.append(sid)
            pending = still
            if not pending and await store.outbox_size() == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"ours: {len(pending)} sagas never reached step {step}")
            await asyncio.sleep(0.2)
