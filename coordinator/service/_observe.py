"""A process's observability in one call: its HTTP server, its meter, its readiness."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any, final

from opentelemetry.metrics import Meter

from coordinator.adapters.rabbitmq import RabbitTransport
from coordinator.service._http import HttpExtras, HttpServer, Readiness, http_app
from coordinator.service._meters import open_meters
from coordinator.service._settings import Settings

__all__ = ["Observed", "observe", "watch_servers"]


@final
class Observed:
    """What `observe` set up.

    Attributes:
        meter: Where to make the process's instruments; None: no metrics.
        readiness: ``/readyz``'s checks: add them once the servers are connected,
            ``drain()`` on the way out.
        server: The HTTP server (more routes: ``server.app.register(...)``); None
            when ``http`` is off.
    """

    def __init__(
        self,
        meter: Meter | None,
        readiness: Readiness,
        server: HttpServer | None,
        extras: HttpExtras | None = None,
    ):
        self.meter = meter
        self.readiness = readiness
        self.server = server
        self.extras = extras

    async def connected(self, stack: AsyncExitStack) -> None:
        """The servers are connected: start what the extras need (the API's clients)."""
        if self.server is not None and self.extras is not None and self.extras.start:
            await self.extras.start(stack)

    @property
    def serving(self) -> str:
        """For the process's "running" line: where the HTTP server is, if anywhere."""
        if self.server is None:
            return ""
        if self.extras is None:
            return f"; /metrics and probes on {self.server.url}"
        access = f" ({self.extras.access})" if self.extras.access else ""
        return f"; /metrics, probes and /api on {self.server.url}{access}"


async def observe(
    stack: AsyncExitStack, settings: Settings, *, process: str, extras: HttpExtras | None = None
) -> Observed:
    """Bind the HTTP port of ``settings.http`` (an error at once if it is taken), set
    up the metrics if anything reads them, and serve; all undone by ``stack``.

    Call it first: the probes answer while the process waits for its servers,
    and the server, closed last, answers ``/readyz`` with 503 while it drains.
    """
    address = settings.http_address
    server = HttpServer.bind(*address) if address is not None else None
    try:
        meters = open_meters(stack, serving=server is not None, process=process)
        readiness = Readiness()
        if server is not None:
            await server.start(http_app(readiness, meters.registry, extras))
    except BaseException:
        if server is not None:
            await server.stop()
        raise
    if server is not None:
        stack.push_async_callback(server.stop)
    return Observed(meters.meter, readiness, server, extras)


def watch_servers(readiness: Readiness, transport: RabbitTransport, redis: Any) -> None:
    """Ready while the broker's channels are open and Redis answers a ``PING``."""

    async def rabbitmq() -> str:
        return transport.problem()

    async def redis_answers() -> str:
        await redis.ping()
        return ""

    readiness.watch("rabbitmq", rabbitmq)
    readiness.watch("redis", redis_answers)
