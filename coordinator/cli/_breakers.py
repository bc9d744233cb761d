"""``saga breakers`` and ``saga breaker open|close|reset SERVICE``: the circuit
breakers of a deployment, and an operator's override of one."""

from __future__ import annotations

import asyncio
import getpass
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, TypeVar

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from coordinator.adapters.redis import RedisBreakerStore, RedisSagaStore
from coordinator.breakers import policies
from coordinator.cli._options import JsonFlag, NamespaceOpt, settings
from coordinator.cli._output import print_json
from coordinator.client import BreakerStatus, Override, breaker_statuses, override_breaker
from coordinator.service import Settings, redis_client, wait_for_server

__all__ = ["commands"]

T = TypeVar("T")

commands = typer.Typer()
breaker = typer.Typer(help="Open, close or reset one service's circuit breaker by hand.")
commands.add_typer(breaker, name="breaker")


@asynccontextmanager
async def _stores(s: Settings) -> AsyncIterator[tuple[RedisBreakerStore, RedisSagaStore]]:
    redis = redis_client(s)
    try:
        await wait_for_server(
            "Redis", s.redis_url, "SAGA_REDIS_URL", redis.ping, patience=timedelta(0)
        )
        sagas = RedisSagaStore(redis, namespace=s.namespace, buckets=s.buckets)
        yield RedisBreakerStore(redis, namespace=s.namespace), sagas
    finally:
        await redis.aclose()


def _run(
    namespace: str | None, job: Callable[[RedisBreakerStore, RedisSagaStore], Awaitable[T]]
) -> T:
    async def run() -> T:
        async with _stores(settings(namespace)) as (store, sagas):
            return await job(store, sagas)

    # Errors become one line in coordinator.cli._errors, for every command.
    return asyncio.run(run())


def _when(at: datetime | None) -> str:
    if at is None:
        return "-"
    left = (at - datetime.now(UTC)).total_seconds()
    return f"{at:%H:%M:%S} (in {left:.0f}s)" if left > 0 else f"{at:%H:%M:%S} (due)"


def _print(rows: list[BreakerStatus], as_json: bool) -> None:
    if as_json:
        print_json(msgspec.to_builtins(rows))
        return
    if not rows:
        typer.echo("no breakers yet: no coordinator has run in this namespace")
        return
    table = Table("SERVICE", "STATE", "FAILURES", "HALF-OPENS AT", "PARKED", box=None)
    for r in rows:
        state = f"{r.state} (held)" if r.held else r.state
        table.add_row(r.service, state, str(r.failures), _when(r.half_open_at), str(r.parked))
    Console().print(table)


@commands.command("breakers")
def list_breakers(as_json: JsonFlag = False, namespace: NamespaceOpt = None) -> None:
    """Each service's circuit breaker: state, failures, when it half-opens, parked sagas."""
    _print(_run(namespace, breaker_statuses), as_json)


ReasonOpt = Annotated[
    str, typer.Option("--reason", help="Why, for the breaker's event log (required).")
]
ByOpt = Annotated[
    str | None,
    typer.Option("--by", help="Who, for the event log; $USER by default.", show_default=False),
]
ServiceArg = Annotated[str, typer.Argument(help="The participant service.")]


def _override(
    action: Override, service: str, reason: str, by: str | None, namespace: str | None
) -> None:
    s = settings(namespace)
    who = by or os.environ.get("USER") or getpass.getuser()
    by_service, default = policies([], defaults=s.breaker_defaults, overrides=s.breakers)
    policy = by_service.get(service, default)

    async def job(store: RedisBreakerStore, sagas: RedisSagaStore) -> BreakerStatus:
        return await override_breaker(
            store, sagas, service, action, reason=reason, by=who, policy=policy
        )

    status = _run(namespace, job)
    typer.echo(f"{service}: {status.state}; {status.parked} saga(s) parked")


@breaker.command("open")
def open_(
    service: ServiceArg, reason: ReasonOpt, by: ByOpt = None, namespace: NamespaceOpt = None
) -> None:
    """Open SERVICE's breaker and hold it open (no probes) until closed or reset."""
    _override("open", service, reason, by, namespace)


@breaker.command("close")
def close(
    service: ServiceArg, reason: ReasonOpt, by: ByOpt = None, namespace: NamespaceOpt = None
) -> None:
    """Close SERVICE's breaker: every saga parked for it resumes."""
    _override("close", service, reason, by, namespace)


@breaker.command("reset")
def reset(
    service: ServiceArg, reason: ReasonOpt, by: ByOpt = None, namespace: NamespaceOpt = None
) -> None:
    """Hand SERVICE's breaker back to the automatic rules (counts cleared; a held breaker
    half-opens after its reset timeout)."""
    _override("reset", service, reason, by, namespace)
