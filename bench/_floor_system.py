"""The floor as a system under test: `bench.floor`'s loop and responder."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import aio_pika

from bench import floor
from bench._infra import (
    BIN,
    ensure_running,
    key_bytes,
    launch,
    scan_keys,
)
from bench._systems import _AmqpSystem, _data, _floor_enc, _floor_msg, _persistent


class Floor(_AmqpSystem):
    """``bench.floor``: a hand-written coordinator loop and responder."""

    name = "floor"
    start_key = "floor.start"
    end_keys = ("floor.completed",)

    def _common(self) -> list[str]:
        return ["--ns", self.ns, "--amqp", self.cfg.amqp_url, "--loop", self.cfg.event_loop]

    async def launch(self, *, participants: str | None = "all") -> None:
        for i in range(self.replicas):
            argv = [
                str(BIN / "python"),
                "-m",
                "bench.floor",
                "coordinator",
                *self._common(),
                "--redis",
                self.cfg.redis_url,
                "--retention",
                str(self.cfg.retention),
            ]
            self.procs.append(launch("coordinator", argv, {}, f"{self.ns}-coordinator{i}"))
        await self._wait_ready(0)
        if participants:
            await self.launch_participants(participants)

    async def launch_participants(self, variant: str) -> None:
        hold = [] if variant == "all" else ["--hold-step", "2"]
        for i in range(self.cfg.participants):
            argv = [str(BIN / "python"), "-m", "bench.floor", "responder", *self._common(), *hold]
            self.procs.append(launch("participant", argv, {}, f"{self.ns}-responder{i}"))
        await self._wait_ready(self.cfg.participants)

    async def start(self, saga_id: str) -> None:
        body = _floor_enc.encode(floor.Msg(id=saga_id, d=_data(saga_id)))
        await self._events.publish(
            _persistent(body, f"{saga_id}:start"), self.start_key, mandatory=True
        )

    async def _ended(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        m = _floor_msg.decode(message.body)
        self.lats[m.id] = m.lat
        self._on_done(m.id, m.event == "completed")

    async def memory(self) -> dict[str, int]:
        keys = await scan_keys(self.redis, f"{self.ns}:*")
        return {
            "coordinator": await key_bytes(self.redis, keys),
            "participants": 0,
            "keys": len(keys),
        }

    def saga_keys(self, saga_id: str) -> list[str]:
        return [floor.state_key(self.ns, saga_id)]

    async def ttls(self, saga_id: str) -> dict[str, int]:
        return {"state": int(await self.redis.ttl(floor.state_key(self.ns, saga_id)))}

    async def wait_point(self, saga_ids: Sequence[str], point: str, timeout: float = 120) -> None:
        want = b"0" if point == "first" else b"2"
        deadline = time.monotonic() + timeout
        while True:
            ensure_running(self.procs)
            pipe = self.redis.pipeline(transaction=False)
            for sid in saga_ids:
                pipe.hget(floor.state_key(self.ns, sid), "v")
            if all(v == want for v in await pipe.execute()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"floor: sagas never reached point {point}")
            await asyncio.sleep(0.2)
