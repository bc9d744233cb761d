"""A deployment for the dashboard's browser tests: a coordinator and the desk's
participants in this process on the real RabbitMQ and Redis, the dashboard on
its own port (an app composed as ``saga api`` composes it: auth middleware,
session, CSRF), and Debian's chromium driven by Playwright.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from litestar import Litestar
from litestar.config.csrf import CSRFConfig

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "e2e"))

from desk import Controls, definition, services
from procs import free_port, poll
from servers import AMQP_URL, REDIS_URL, connect_rabbit

from coordinator.client import SagaClient
from coordinator.dashboard import dashboard_router, open_backend
from coordinator.service import (
    Settings,
    Tokens,
    auth_middleware,
    new_token,
    open_client,
    serve_coordinator,
    session_config,
)
from coordinator.service._http import HttpServer
from participants import serve_participants

CHROMIUM = "/usr/bin/chromium"
QUEUES = ["coordinator.events", "desk.commands", "pager.commands"]


@dataclass
class Board:
    """The running deployment: its client, the desk's controls, the dashboard's URL
    and a token for each role."""

    url: str
    client: SagaClient
    controls: Controls
    tokens: dict[str, str]


def _tokens() -> tuple[list[dict[str, str]], dict[str, str]]:
    """The ``SAGA_API_TOKENS`` entries and the plain token of each role."""
    plain: dict[str, str] = {}
    entries = []
    for role in ("viewer", "operator", "admin"):
        secret, entry = new_token(f"{role}-user", role)  # type: ignore[arg-type]
        plain[role] = secret
        entries.append({"name": entry.name, "role": entry.role, "sha256": entry.sha256})
    return entries, plain


async def _ready(url: str) -> bool | None:
    async with httpx.AsyncClient(timeout=5) as http:
        try:
            return True if (await http.get(f"{url}/readyz")).status_code == 200 else None
        except httpx.TransportError:
            return None


@pytest.fixture
async def board(ns: str, redis_client: object) -> AsyncIterator[Board]:
    hashed, plain = _tokens()
    coordinator_port, participant_port = free_port(), free_port()
    base = Settings(
        namespace=ns,
        amqp_url=AMQP_URL,
        redis_url=REDIS_URL,
        timer_interval=timedelta(seconds=0.05),
        wait_for_servers=timedelta(seconds=10),
        api_tokens=hashed,
        session_secret=secrets.token_hex(16),
        trace_url="http://jaeger.example/trace/{trace_id}",
    )
    at = base.model_copy(update={"http": f"127.0.0.1:{coordinator_port}"})
    participant_at = base.model_copy(update={"http": f"127.0.0.1:{participant_port}"})
    controls = Controls()
    stop = asyncio.Event()
    coordinator = asyncio.create_task(serve_coordinator([definition()], at, stop=stop))
    participants = asyncio.create_task(
        serve_participants(services(controls), participant_at, stop=stop)
    )
    tokens = Tokens.from_settings(base)
    app = Litestar(
        route_handlers=[
            dashboard_router(
                lambda: open_backend(base),
                tokens=tokens,
                definitions=[definition()],
                accept_timeout=10,
            )
        ],
        middleware=[session_config(base).middleware, auth_middleware(tokens)],
        csrf_config=CSRFConfig(secret=secrets.token_hex(16), exclude=["/api", "/metrics"]),
        openapi_config=None,
        logging_config=None,
    )
    server = HttpServer.bind("127.0.0.1", 0)
    helper = await connect_rabbit(ns)
    try:
        await poll(
            "the coordinator",
            lambda: _ready(f"http://127.0.0.1:{coordinator_port}"),
            timeout=30,
            interval=0.05,
        )
        await poll(
            "the participants",
            lambda: _ready(f"http://127.0.0.1:{participant_port}"),
            timeout=30,
            interval=0.05,
        )
        await server.start(app)
        async with open_client(base) as client:
            yield Board(server.url, client, controls, plain)
    finally:
        for gate in controls.released.values():
            gate.set()  # a held handler lets the participants stop
        await server.stop()
        stop.set()
        await asyncio.gather(coordinator, participants, return_exceptions=True)
        await helper.delete_namespace(QUEUES)
        await helper.close()
    assert coordinator.exception() is None and participants.exception() is None


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    async with async_playwright() as play:
        chromium = await play.chromium.launch(executable_path=CHROMIUM)
        try:
            yield chromium
        finally:
            await chromium.close()
