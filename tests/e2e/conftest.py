"""Fixtures of the end-to-end suite: a deployment per test, its logs on failure.

Every test gets a fresh namespace, so runs never see each other; at teardown
every process it started is stopped (SIGTERM, then SIGKILL), the logs of a
failed test are printed, and the namespace's Redis keys and RabbitMQ queues
are deleted.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from procs import Deployment, servers_up
from servers import require_program, unavailable
from throwaway import RabbitServer, RedisClusterServers, RedisServer


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def failed(request: pytest.FixtureRequest) -> bool:
    node = request.node
    return any(
        getattr(getattr(node, f"report_{when}", None), "failed", False)
        for when in ("setup", "call")
    )


@pytest.fixture
async def deploy(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[..., Deployment]]:
    """``deploy(**options)`` makes a `Deployment` (no process started yet).

    Everything it starts is stopped at teardown, whatever the outcome.
    """
    made: list[Deployment] = []

    def make(**options: object) -> Deployment:
        servers_up(**{k: v for k, v in options.items() if k in ("amqp_url", "redis_url")})  # type: ignore[arg-type]
        # A second deployment in one test gets a directory (ledger, logs) of its own.
        tmp = tmp_path / f"deployment-{len(made)}" if made else tmp_path
        tmp.mkdir(exist_ok=True)
        deployment = Deployment(tmp, **options)  # type: ignore[arg-type]
        made.append(deployment)
        return deployment

    yield make
    for deployment in made:
        await deployment.stop_all()
    if failed(request):
        for deployment in made:
            print(f"\n===== namespace {deployment.ns}, logs in {deployment.tmp}")
            deployment.dump_logs()
    for deployment in made:
        await deployment.cleanup()
    # aio-pika runs the close callbacks of channels and connections as tasks:
    # let them finish before pytest-asyncio closes the loop.
    await asyncio.sleep(0.5)


@pytest.fixture
async def rabbit_server(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[RabbitServer]:
    """A RabbitMQ node of its own, started; killed at teardown."""
    why = RabbitServer.available()
    if why:
        unavailable("a throwaway RabbitMQ", RuntimeError(why))
    server = RabbitServer(tmp_path)
    try:
        took = await server.start()
        print(f"throwaway RabbitMQ {server.node} on {server.port} ready in {took:.1f} s")
        yield server
    finally:
        await server.stop()
        if failed(request):
            print(f"\n----- rabbitmq log ({server.proc.log}) -----\n{server.proc.tail(60)}")


@pytest.fixture
async def redis_server(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[RedisServer]:
    """A redis-server of its own (AOF, fsync always), started; stopped at teardown."""
    require_program("redis-server")
    server = RedisServer(tmp_path)
    try:
        await server.start()
        yield server
    finally:
        await server.stop()
        if failed(request):
            print(f"\n----- redis log ({server.proc.log}) -----\n{server.proc.tail(40)}")


@pytest.fixture
async def redis_cluster(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[RedisClusterServers]:
    """Three redis-servers joined into a cluster; stopped at teardown."""
    require_program("redis-server")
    require_program("redis-cli")
    cluster = RedisClusterServers(tmp_path)
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.stop()
        if failed(request):
            for proc in cluster.procs:
                print(f"\n----- {proc.name} ({proc.log}) -----\n{proc.tail(30)}")
