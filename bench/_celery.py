"""The Celery chain as a system under test (``--with-celery``)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import msgspec

from bench._infra import BIN, delete_amqp, key_bytes, launch, scan_keys, unlink
from bench._systems import OnDone, System, _data


class CeleryChain(System):
    """A Celery chain of three no-op tasks, results in Redis (``--with-celery``)."""

    name = "celery"

    def env(self) -> dict[str, str]:
        return {
            "BENCH_NS": self.ns,
            "BENCH_AMQP_URL": self.cfg.amqp_url,
            "BENCH_REDIS_URL": self.cfg.redis_url,
            "BENCH_RETENTION": str(self.cfg.retention),
            "BENCH_PREFETCH": str(self.cfg.celery_prefetch),
        }

    async def launch(self, *, participants: str | None = "all") -> None:
        argv = [
            str(BIN / "celery"),
            "-A",
            "bench.celery_app",
            "worker",
            "-Q",
            self.ns,
            "-P",
            self.cfg.celery_pool,
            "-c",
            str(self.cfg.celery_concurrency),
            "--prefetch-multiplier",
            str(self.cfg.celery_prefetch),
            "-l",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"{self.ns}@%h",
        ]
        for i in range(self.cfg.participants):
            self.procs.append(launch("participant", argv, self.env(), f"{self.ns}-celery{i}"))
        await self._wait_consumers(self.ns, self.cfg.participants)

    async def open(self, on_done: OnDone) -> None:
        from celery import chain

        from bench.celery_app import make_app

        self._chain = chain
        self._app = make_app(self.ns, self.cfg.amqp_url, None, self.cfg.retention, 1)
        self._pool = ThreadPoolExecutor(4, thread_name_prefix="celery-publish")
        self._pubsub = self.redis.pubsub()
        await self._pubsub.psubscribe(f"celery-task-meta-{self.ns}-*-c")
        self._on_done = on_done
        self._listener = asyncio.create_task(self._listen())
        self.t_pub: dict[str, float] = {}

    async def _listen(self) -> None:
        prefix = len(f"celery-task-meta-{self.ns}-")
        async for message in self._pubsub.listen():
            if message["type"] != "pmessage":
                continue
            channel = message["channel"].decode()
            sid = channel[prefix:-2]
            status = msgspec.json.decode(message["data"]).get("status")
            if status in ("SUCCESS", "FAILURE", "REVOKED"):
                self._on_done(sid, status == "SUCCESS")

    def _tid(self, saga_id: str, step: str) -> str:
        return f"{self.ns}-{saga_id}-{step}"

    async def start(self, saga_id: str) -> None:
        sig = self._chain(
            self._app.signature("bench.a", args=(_data(saga_id),)).set(
                task_id=self._tid(saga_id, "a")
            ),
            self._app.signature("bench.b").set(task_id=self._tid(saga_id, "b")),
            self._app.signature("bench.c").set(task_id=self._tid(saga_id, "c")),
        )
        self.t_pub[saga_id] = time.time()
        await asyncio.get_running_loop().run_in_executor(self._pool, sig.apply_async)

    async def step_latencies(self, saga_ids: Sequence[str]) -> list[float]:
        """Between the ``date_done`` of consecutive tasks: two intervals per chain."""
        out: list[float] = []
        for sid in saga_ids:
            metas = await self.redis.mget([f"celery-task-meta-{self._tid(sid, s)}" for s in "abc"])
            if any(m is None for m in metas):
                continue
            done = [
                datetime.fromisoformat(msgspec.json.decode(m)["date_done"]).timestamp()
                for m in metas
            ]
            out += [done[1] - done[0], done[2] - done[1]]
        return out

    async def memory(self) -> dict[str, int]:
        keys = await scan_keys(self.redis, f"celery-task-meta-{self.ns}-*")
        return {
            "coordinator": 0,
            "participants": await key_bytes(self.redis, keys),
            "keys": len(keys),
        }

    def saga_keys(self, saga_id: str) -> list[str]:
        return [f"celery-task-meta-{self._tid(saga_id, s)}" for s in "abc"]

    async def ttls(self, saga_id: str) -> dict[str, int]:
        return {"result": int(await self.redis.ttl(f"celery-task-meta-{self._tid(saga_id, 'c')}"))}

    async def close(self) -> None:
        listener = getattr(self, "_listener", None)
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
            self._pool.shutdown(wait=True)
            with contextlib.suppress(Exception):
                self._app.close()
        await super().close()

    async def cleanup(self) -> None:
        await delete_amqp(self.conn, [self.ns], [self.ns])
        await unlink(self.redis, await scan_keys(self.redis, f"celery-task-meta-{self.ns}-*"))
