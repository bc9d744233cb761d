"""The HTTP side of ``saga run`` and ``saga participant``: ``/metrics``, ``/livez``
and ``/readyz`` on a Litestar app that uvicorn serves inside the process.

* ``/livez``: 200 as long as the event loop answers a request.
* ``/readyz``: 200 when every check passes (the broker's channels are open, Redis
  answers a ``PING``), else 503 with the reasons; 503 too while the process
  connects at start and once it drains after SIGTERM.
* ``/metrics``: the Prometheus text format (OpenMetrics when asked for), from
  the process's ``prometheus_client`` registry.

The port is bound before anything else is started, so a port already in use is
an error at once, not after the wait for RabbitMQ. uvicorn runs as a task on
the process's loop; it leaves SIGTERM and SIGINT to ``until_signalled``. More
routes (the REST API, the dashboard) come with `HttpExtras`: route handlers,
middleware, CSRF, OpenAPI and templates, and a ``start`` the process awaits once
its servers are connected (the API opens its clients there).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, final

import uvicorn
from litestar import Litestar, MediaType, Response, get
from litestar.handlers import asgi
from prometheus_client import CollectorRegistry, make_asgi_app

from coordinator._errors import SagaError

__all__ = ["HttpAddressError", "HttpExtras", "HttpServer", "Readiness"]

_log = logging.getLogger("coordinator")

Check = Callable[[], Awaitable[str]]
"""A readiness check: ``""`` when fine, else why not (a few words)."""

CHECK_TIMEOUT = 2.0
_STOP_GRACE = 2


class HttpAddressError(SagaError):
    """The HTTP port cannot be served: in use by another process, or no such address."""


@final
class Readiness:
    """What ``/readyz`` answers: the named checks, and whether the process is draining."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}
        self._draining = False

    def watch(self, name: str, check: Check) -> None:
        """Add (or replace) a check; ``/readyz`` is 503 until there is at least one."""
        self._checks[name] = check

    def drain(self) -> None:
        """From now on ``/readyz`` is 503: the process is stopping."""
        self._draining = True

    async def problems(self) -> list[str]:
        """Why the process is not ready; empty when it is."""
        if self._draining:
            return ["draining: the process is stopping"]
        if not self._checks:
            return ["starting: connecting to RabbitMQ and Redis"]
        names = list(self._checks)
        found = await asyncio.gather(*(self._run(name) for name in names))
        return [f"{name}: {problem}" for name, problem in zip(names, found, strict=True) if problem]

    async def _run(self, name: str) -> str:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                return await self._checks[name]()
        except TimeoutError:
            return f"no answer within {CHECK_TIMEOUT:g} s"
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


@dataclass(frozen=True)
class HttpExtras:
    """More for the HTTP server than the probes and ``/metrics``: the REST API, the dashboard.

    Attributes:
        routes: Route handlers, routers and controllers.
        middleware: The app's middleware, outermost first (session, then auth).
        csrf_config: Litestar's ``CSRFConfig`` (the dashboard's forms).
        openapi_config: Litestar's ``OpenAPIConfig``; None: no schema served.
        template_config: Litestar's ``TemplateConfig``, for server-rendered pages.
        exception_handlers: By exception type or status code.
        start: Awaited by the process once its servers are connected (undone by the
            stack it is given); the routes answer 503 until it has run.
        access: For the process's start line: who may use the routes (e.g. "API
            tokens required").
    """

    routes: Sequence[Any] = ()
    middleware: Sequence[Any] = ()
    csrf_config: Any = None
    openapi_config: Any = None
    template_config: Any = None
    exception_handlers: Mapping[Any, Any] = field(default_factory=dict)
    start: Callable[[AsyncExitStack], Awaitable[None]] | None = None
    access: str = ""


def http_app(
    readiness: Readiness, registry: CollectorRegistry | None, extras: HttpExtras | None = None
) -> Litestar:
    """The app: probes, ``/metrics`` when a ``registry`` is given, and the ``extras``."""

    @get("/livez", media_type=MediaType.TEXT, sync_to_thread=False, include_in_schema=False)
    def livez() -> str:
        return "ok\n"

    @get("/readyz", media_type=MediaType.JSON, include_in_schema=False)
    async def readyz() -> Response[dict[str, Any]]:
        problems = await readiness.problems()
        if problems:
            return Response({"status": "unready", "reasons": problems}, status_code=503)
        return Response({"status": "ready"}, status_code=200)

    handlers: list[Any] = [livez, readyz]
    if registry is not None:
        prometheus = make_asgi_app(registry)

        @asgi("/metrics", is_mount=True, copy_scope=True, include_in_schema=False)
        async def metrics(scope: Any, receive: Any, send: Any) -> None:
            await prometheus(scope, receive, send)

        handlers.append(metrics)
    if extras is None:
        return Litestar(route_handlers=handlers, openapi_config=None, logging_config=None)
    return Litestar(
        route_handlers=[*handlers, *extras.routes],
        middleware=list(extras.middleware),
        csrf_config=extras.csrf_config,
        openapi_config=extras.openapi_config,
        template_config=extras.template_config,
        exception_handlers=dict(extras.exception_handlers),
        logging_config=None,
    )


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The process handles SIGTERM and SIGINT itself (``until_signalled``): it
        # drains the saga work first and stops this server last.
        yield


@final
class HttpServer:
    """uvicorn on a socket bound by `bind`, serving an app as a task of the running loop.

    Example:
        server = HttpServer.bind("127.0.0.1", 9464)  # fails at once if the port is taken
        await server.start(http_app(readiness, registry))
        ...
        await server.stop()
    """

    def __init__(self, sock: socket.socket) -> None:
        self._socket = sock
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.app: Litestar | None = None

    @classmethod
    def bind(cls, host: str, port: int) -> HttpServer:
        """Bind ``host:port`` now (port 0: any free one).

        Raises:
            HttpAddressError: the port is in use, or the host is not an address here.
        """
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            why = "the port is in use" if exc.errno == errno.EADDRINUSE else str(exc.strerror)
            raise HttpAddressError(
                f"cannot serve HTTP on {where}: {why}; choose another with --http HOST:PORT "
                "or SAGA_HTTP (off: no HTTP server)"
            ) from exc
        return cls(sock)

    @property
    def port(self) -> int:
        """The port bound (the one picked, for port 0)."""
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        host = self._socket.getsockname()[0]
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    async def start(self, app: Litestar) -> None:
        """Serve ``app`` in the background; returns once connections are accepted."""
        self.app = app
        config = uvicorn.Config(
            app,
            log_config=None,
            log_level=logging.WARNING,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=_STOP_GRACE,
        )
        server = self._server = _Server(config)
        task = self._task = asyncio.create_task(server.serve(sockets=[self._socket]))
        # uvicorn has no event for it; its startup takes a few loop turns.
        while not server.started:
            if task.done():
                await task  # its startup failed: raises why
                raise HttpAddressError(f"the HTTP server on {self.url} did not start")
            await asyncio.sleep(0.01)
        # Said in the process's "running" line: a start that fails next stays one line.
        _log.debug("serving /metrics, /livez and /readyz on %s", self.url)

    async def stop(self) -> None:
        """Close the port and end open connections (within a couple of seconds)."""
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._socket.close()
