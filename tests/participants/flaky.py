"""A Redis client that fails chosen commands with the real redis-py exceptions."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

from redis.asyncio import Redis

Fault = Callable[[tuple[Any, ...]], BaseException | None]


class FlakyRedis:
    """Passes everything to ``inner`` except the commands ``fault`` answers with an
    exception: those raise it, as the client does when the server is away."""

    def __init__(self, inner: Redis, fault: Fault) -> None:
        self.inner = inner
        self.fault = fault
        self.failed = 0

    def register_script(self, text: str) -> Any:
        return self.inner.register_script(text)

    async def script_load(self, text: str) -> Any:
        return await self.inner.script_load(text)

    def _check(self, args: tuple[Any, ...]) -> None:
        error = self.fault(args)
        if error is not None:
            self.failed += 1
            raise error

    async def execute_command(self, *args: Any) -> Any:
        self._check(args)
        return await self.inner.execute_command(*args)

    def pipeline(self, transaction: bool = False) -> _FlakyPipeline:
        return _FlakyPipeline(self)


class _FlakyPipeline:
    def __init__(self, client: FlakyRedis) -> None:
        self.client = client
        self.commands: list[tuple[Any, ...]] = []

    async def __aenter__(self) -> _FlakyPipeline:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def execute_command(self, *args: Any) -> None:
        self.commands.append(args)

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        for args in self.commands:  # a connection error fails the whole pipeline
            self.client._check(args)
        async with self.client.inner.pipeline(transaction=False) as pipe:
            for args in self.commands:
                pipe.execute_command(*args)
            return list(await pipe.execute(raise_on_error=raise_on_error))
