"""The REST API and the dashboard's HTML redact sensitive saga data for a viewer, and
open it for a token allowed to read payloads, with an audit line naming who and which
saga. A coordinator with the API and the dashboard runs in this process, as ``saga
run --http`` does, on the real RabbitMQ and Redis; its dashboard pages read through the
connections the process holds."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from pii_support import Seen, definition, new_key, secrets, services
from redis.asyncio import Redis
from servers import AMQP_URL, REDIS_URL, connect_rabbit, drop_namespace
from throwaway import RedisServer

from coordinator.adapters.memory import SystemClock
from coordinator.adapters.redis import RedisIdempotencyStore
from coordinator.cli._api import http_extras
from coordinator.service import Settings, new_token, open_client, serve_coordinator

VIEWER = new_token("viewer-1", "viewer")
AUDITOR_TOKEN, _auditor = new_token("auditor-1", "viewer")
AUDITOR = (AUDITOR_TOKEN, msgspec.structs.replace(_auditor, payloads=True))
KEYS = f"k1:{new_key()}"


def bearer(token: tuple[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {token[0]}"}


@pytest.fixture
async def served(ns: str) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(ns, REDIS_URL) as http:
        yield http


@contextlib.asynccontextmanager
async def serving(ns: str, redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings(
        namespace=ns,
        amqp_url=AMQP_URL,
        redis_url=redis_url,
        timer_interval=timedelta(seconds=0.05),
        wait_for_servers=timedelta(seconds=10),
        http=f"127.0.0.1:{port}",
        api_tokens=[msgspec.to_builtins(e) for _t, e in (VIEWER, AUDITOR)],
        data_keys=KEYS,  # type: ignore[arg-type]  # pydantic makes the SecretStr
    )
    definitions = [definition()]
    stop = asyncio.Event()
    task = asyncio.create_task(
        serve_coordinator(
            definitions, settings, stop=stop, extras=http_extras(settings, definitions)
        )
    )
    redis = Redis.from_url(redis_url)
    participant = await connect_rabbit(ns)
    idempotency = RedisIdempotencyStore(redis, namespace=ns, ttl=timedelta(hours=1))
    workers = [
        s.worker(transport=participant, idempotency=idempotency, clock=SystemClock())
        for s in services(Seen())
    ]
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        for _ in range(600):
            if task.done():
                raise AssertionError(f"the coordinator stopped: {task.exception()!r}")
            try:
                if (await http.get("/readyz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
        for w in workers:
            await w.start()
        yield http
    finally:
        for w in workers:
            await w.stop()
        stop.set()
        await task
        await http.aclose()
        await participant.delete_namespace(participant.queues)
        await participant.close()
        await drop_namespace(redis, ns)
        await redis.aclose()


async def completed(ns: str, saga_id: str, redis_url: str = REDIS_URL) -> tuple[str, str]:
    """Start a saga with fresh secrets through the client, wait until it completed."""
    card, email = secrets()
    settings = Settings(namespace=ns, amqp_url=AMQP_URL, redis_url=redis_url)
    async with open_client(settings) as client:
        data = {"order_id": saga_id, "card": card, "email": email}
        await client.start("pii.pay", data, saga_id)
        for _ in range(300):
            state = await client.state(saga_id)
            if state is not None and state.status == "completed":
                return card, email
            await asyncio.sleep(0.05)
    raise AssertionError("the saga did not complete")


async def test_a_viewer_sees_bullets_and_a_payload_reader_the_values_audited(
    served: httpx.AsyncClient, ns: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="coordinator.audit")
    card, email = await completed(ns, "v1")

    viewer_pages = [
        await served.get(path, headers=bearer(VIEWER))
        for path in ("/api/sagas/v1", "/api/sagas/v1/history", "/ui/sagas/v1")
    ]
    for answer in viewer_pages:
        assert answer.status_code == 200, (answer.request.url, answer.text[:300])
        for secret in (card, email):
            assert secret not in answer.text, answer.request.url
    shown = viewer_pages[0].json()["data"]
    assert (shown["card"], shown["email"], shown["receipt"]) == ("•••", "•••", "r-v1")
    assert "•••" in viewer_pages[2].text  # the dashboard's data block
    assert not [r for r in caplog.records if r.name == "coordinator.audit"]

    opened = await served.get("/api/sagas/v1", headers=bearer(AUDITOR))
    assert opened.status_code == 200
    assert (opened.json()["data"]["card"], opened.json()["data"]["email"]) == (card, email)
    history = await served.get("/api/sagas/v1/history", headers=bearer(AUDITOR))
    assert card in history.text
    page = await served.get("/ui/sagas/v1", headers=bearer(AUDITOR))
    assert card in page.text
    audit = [r.getMessage() for r in caplog.records if r.name == "coordinator.audit"]
    assert audit and all("auditor-1" in line and "v1" in line for line in audit), audit
    assert len(audit) >= 3
    assert not any(card in line for line in audit)


def saga_cli(ns: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SAGA_")},
        "SAGA_NAMESPACE": ns,
        "SAGA_AMQP_URL": AMQP_URL,
        "SAGA_REDIS_URL": REDIS_URL,
        **env,
    }
    return subprocess.run(
        [str(Path(sys.executable).parent / "saga"), *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_saga_show_redacts_and_reveals_with_the_local_keys(
    served: httpx.AsyncClient, ns: str
) -> None:
    card, email = await completed(ns, "c1")
    plain = saga_cli(ns, "show", "c1", "--json")
    assert plain.returncode == 0, plain.stderr
    assert json.loads(plain.stdout)["data"]["card"] == "•••"
    history = saga_cli(ns, "history", "c1", "--json")
    assert history.returncode == 0 and "•••" in history.stdout
    for done in (plain, history):
        assert card not in done.stdout + done.stderr and email not in done.stdout

    keyless = saga_cli(ns, "show", "c1", "--reveal")
    assert keyless.returncode == 2 and "--reveal needs the keys" in keyless.stderr

    revealed = saga_cli(ns, "show", "c1", "--json", "--reveal", SAGA_DATA_KEYS=KEYS)
    assert revealed.returncode == 0, revealed.stderr
    assert json.loads(revealed.stdout)["data"]["card"] == card


async def test_dashboard_pages_read_through_the_connections_the_process_holds(
    ns: str, tmp_path: Path
) -> None:
    # A dashboard polls every 2 s: a page that connected to Redis anew (with TLS,
    # a handshake each time) would churn connections for as long as it is open.
    # A Redis of its own, so that every connection it counts is this process's.
    server = RedisServer(tmp_path)
    await server.start()
    redis = server.client()
    try:
        async with serving(ns, server.url) as served:
            await completed(ns, "c1", server.url)

            async def connections() -> int:
                return int((await redis.info("stats"))["total_connections_received"])

            pages = ("/ui/sagas", "/ui/sagas/c1", "/ui/breakers")
            for path in pages:  # warm
                await served.get(path, headers=bearer(VIEWER))
            before = await connections()
            for _ in range(5):
                for path in pages:
                    page = await served.get(path, headers=bearer(VIEWER))
                    assert page.status_code == 200, (path, page.status_code)
            # The held pool may still grow by a connection or two where a page's read
            # meets the coordinator's own loops (timers every 50 ms); pages that
            # connect anew open two each: 30 here.
            assert await connections() - before <= 3
    finally:
        await redis.aclose()
        await server.stop()
