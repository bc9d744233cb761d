"""The API's fixture: a coordinator on the real servers with the API on its HTTP server.

It runs ``saga_definitions`` (the approval saga, which needs no participant) and,
next to it, workers for ``participant_services`` (none); a test module that needs
sagas with steps overrides both fixtures.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import msgspec
import pytest
from api_support import TOKENS, Api, approval
from procs import free_port, poll
from redis.asyncio import Redis
from servers import AMQP_URL, REDIS_URL, connect_rabbit

from coordinator.api import api_extras
from coordinator.client import namespace_queues
from coordinator.core import SagaDefinition
from coordinator.service import Settings, serve_coordinator
from participants import Service, serve_participants


@pytest.fixture
def saga_definitions() -> list[SagaDefinition[Any]]:
    return [approval()]


@pytest.fixture
def participant_services() -> list[Service]:
    return []


async def _until_ready(client: httpx.AsyncClient, url: str, task: asyncio.Task[None]) -> None:
    async def ready() -> bool | None:
        if task.done():
            raise AssertionError(f"{url} stopped: {task.exception()!r}")
        try:
            answer = await client.get(f"{url}/readyz")
        except httpx.TransportError:
            return None
        return True if answer.status_code == 200 else None

    await poll(f"{url} to be ready", ready, timeout=60, interval=0.1)


@pytest.fixture
async def api(
    ns: str,
    redis_client: Redis,  # drops the namespace's keys after the test
    saga_definitions: list[SagaDefinition[Any]],
    participant_services: list[Service],
) -> AsyncIterator[Api]:
    port = free_port()
    settings = Settings(
        namespace=ns,
        amqp_url=AMQP_URL,
        redis_url=REDIS_URL,
        timer_interval=timedelta(seconds=0.05),
        wait_for_servers=timedelta(seconds=10),
        http=f"127.0.0.1:{port}",
        api_tokens=[msgspec.to_builtins(entry) for _token, entry in TOKENS.values()],
    )
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(
            serve_coordinator(
                saga_definitions,
                settings,
                stop=stop,
                extras=api_extras(settings, saga_definitions),
            )
        )
    ]
    client = Api(f"http://127.0.0.1:{port}", settings)
    urls = [client.base]
    if participant_services:
        # Their own HTTP port: /readyz says when their queues are consumed.
        at = settings.model_copy(update={"http": f"127.0.0.1:{free_port()}"})
        tasks.append(asyncio.create_task(serve_participants(participant_services, at, stop=stop)))
        urls.append(f"http://{at.http}")
    try:
        for url, task in zip(urls, tasks, strict=True):
            await _until_ready(client.http, url, task)
        yield client
    finally:
        stop.set()
        await client.http.aclose()
        await asyncio.gather(*tasks, return_exceptions=True)
        services = {step.service for d in saga_definitions for step in d.steps.values()}
        helper = await connect_rabbit(ns)
        await helper.delete_namespace(namespace_queues(services))
        await helper.close()
    for task in tasks:
        assert task.exception() is None, task.exception()
