"""Redis commands from many tasks, sent together as pipelines.

redis-py spends about 100 us of CPU on every command it sends on its own
(taking a pooled connection, its retry wrapper, its metrics hooks), and about
a quarter of that per command in a pipeline. A coordinator or a participant
with many deliveries in flight issues its commands from many tasks at once.
The batcher collects them until the loop has run every ready task, and while
a pipeline is on the wire, until it returns; then they go out together, each
caller getting its own reply. Under load a batch is what arrived during one
round trip; a caller alone costs what it did before, and nobody waits for a
batch to fill.

Every command sent this way must be safe to send twice: a pipeline is sent
again as a whole when the connection fails under it (redis-py's retry), and
the scripts of the stores are written for exactly that.
"""

from __future__ import annotations

import asyncio
from typing import Any, final

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, ResponseError

__all__ = ["Batcher", "LuaScript"]

_Pending = tuple[tuple[Any, ...], "asyncio.Future[Any]"]


@final
class LuaScript:
    """A script sent by its SHA1, loaded on first use on each server."""

    def __init__(self, redis: Redis | RedisCluster, text: str) -> None:
        self.text = text
        self.sha: str = redis.register_script(text).sha


@final
class Batcher:
    """Sends the commands of one loop turn in one pipeline (no MULTI).

    While ``max_in_flight`` pipelines are on the wire, what callers issue
    waits and goes out in the next pipeline, once one returns: under load the
    batches grow to what arrived during a round trip, and a lone caller never
    waits.

    Args:
        redis: A ``redis.asyncio`` client, standalone or cluster.
        max_batch: Commands per pipeline at most; a longer turn is split.
        max_in_flight: Pipelines on the wire at once.
    """

    def __init__(
        self, redis: Redis | RedisCluster, *, max_batch: int = 256, max_in_flight: int = 1
    ) -> None:
        self._redis: Any = redis
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._pending: list[_Pending] = []
        self._flushing = False
        self._sending: set[asyncio.Task[None]] = set()

    async def execute(self, *args: Any) -> Any:
        """Send one command (name and arguments) with the others of this turn.

        Raises:
            redis.exceptions.RedisError: The command's own error, or the
                pipeline's (a connection error fails every command in it).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((args, future))
        self._schedule(loop)
        return await future

    async def run(self, script: LuaScript, keys: list[Any], args: list[Any]) -> Any:
        """Run a script by its SHA1, loading it first where the server lacks it."""
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            # A restarted (or new) server: load it there, then send it again.
            await self._redis.script_load(script.text)
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        # At the end of this turn, once every ready task has issued its commands;
        # with a pipeline still on the wire, once it has returned.
        if not self._flushing and len(self._sending) < self._max_in_flight:
            self._flushing = True
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flushing = False
        loop = asyncio.get_running_loop()
        while self._pending and len(self._sending) < self._max_in_flight:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            task = loop.create_task(self._send(batch), name="redis-batch")
            self._sending.add(task)
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        if self._pending:
            self._schedule(asyncio.get_running_loop())

    async def _send(self, batch: list[_Pending]) -> None:
        results: list[Any]
        try:
            if len(batch) == 1:  # alone in its turn: no pipeline needed
                try:
                    results = [await self._redis.execute_command(*batch[0][0])]
                except ResponseError as exc:  # the command's own error
                    results = [exc]
            else:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for args, _ in batch:
                        pipe.execute_command(*args)
                    results = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # the connection: every command in the batch failed
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except asyncio.CancelledError:  # the loop is closing
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # its caller was cancelled
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
