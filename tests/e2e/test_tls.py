"""TLS, verified, to RabbitMQ and Redis, and the Redis ACL users, on throwaway servers.

One RabbitMQ node and one Redis for the module (a node takes 10-20 s to start),
both TLS only and asking for client certificates, with certificates from a CA
the test makes (``trustme``); the Redis loads the ACL file of the module's
namespace. Each refusal is checked as the one line the operator reads.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import msgspec
import pytest
import pytest_asyncio
import trustme
from procs import SAGA, free_port, poll
from redis.exceptions import AuthenticationError, NoPermissionError
from servers import REDIS_URL, require_program, unavailable
from throwaway import Certs, RabbitServer, RedisServer

from coordinator._errors import SettingsError, UnroutableError
from coordinator.adapters.memory import SystemClock
from coordinator.adapters.redis import acl_users
from coordinator.api import api_extras, serve_api
from coordinator.examples.orders import Ledger, build_services, saga
from coordinator.service import (
    Settings,
    connect_rabbit,
    new_token,
    open_client,
    serve_coordinator,
    tls_context,
)
from coordinator.service._tls import diagnose_tls
from participants import serve_participants

pytestmark = pytest.mark.asyncio(loop_scope="module")

NS = f"tls{uuid.uuid4().hex[:6]}"
PASSWORDS = {role: uuid.uuid4().hex for role in ("coordinator", "participant", "reader")}
ADMIN_PASSWORD = uuid.uuid4().hex  # the test's own user, to read ACL LOG


class Servers:
    def __init__(self, certs: Certs, rabbit: RabbitServer, redis: RedisServer) -> None:
        self.certs, self.rabbit, self.redis = certs, rabbit, redis

    def redis_url(self, role: str, host: str = "localhost", scheme: str = "rediss") -> str:
        return f"{scheme}://{NS}.{role}:{PASSWORDS[role]}@{host}:{self.redis.port}/0"

    def settings(self, role: str = "coordinator", **changes: Any) -> Settings:
        fields: dict[str, Any] = {
            "namespace": NS,
            "amqp_url": self.rabbit.url,
            "redis_url": self.redis_url(role),
            "timer_interval": timedelta(seconds=0.05),
            "wait_for_servers": timedelta(seconds=5),
            **self.certs.env(),
        }
        return Settings(**{**fields, **changes})

    def env(self, role: str = "reader", **changes: str) -> dict[str, str]:
        """The environment of a ``saga`` command run as ``role``."""
        keep = {k: v for k, v in os.environ.items() if not k.startswith("SAGA_")}
        ours = {f"SAGA_{k.upper()}": v for k, v in self.certs.env().items()}
        return {
            **keep,
            **ours,
            "SAGA_NAMESPACE": NS,
            "SAGA_AMQP_URL": self.rabbit.url,
            "SAGA_REDIS_URL": self.redis_url(role),
            **changes,
        }


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def servers(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Servers]:
    why = RabbitServer.available()
    if why:
        unavailable("a throwaway RabbitMQ", RuntimeError(why))
    require_program("redis-server")
    tmp = tmp_path_factory.mktemp("tls")
    certs = Certs(tmp / "certs")
    aclfile = tmp / "users.acl"
    admin = f"user admin on >{ADMIN_PASSWORD} ~* &* +@all\n"
    aclfile.write_text(acl_users(NS, PASSWORDS) + admin)
    rabbit = RabbitServer(tmp, tls=certs)
    redis = RedisServer(tmp, tls=certs, aclfile=aclfile)
    try:
        await asyncio.gather(rabbit.start(), redis.start())
        yield Servers(certs, rabbit, redis)
    finally:
        await asyncio.gather(rabbit.stop(), redis.stop())


def run_saga(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SAGA, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


# -- verification off --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "option"),
    [
        ("SAGA_REDIS_URL", "ssl_cert_reqs=none"),
        ("SAGA_REDIS_URL", "ssl_check_hostname=false"),
        ("SAGA_AMQP_URL", "no_verify_ssl=1"),
    ],
)
async def test_a_url_turning_verification_off_stops_the_process_in_one_line(
    servers: Servers, variable: str, option: str
) -> None:
    env = servers.env()
    env[variable] = f"{env[variable]}?{option}"
    # `saga dead-letters` connects to both servers.
    done = await asyncio.to_thread(run_saga, env, "dead-letters", "list")
    assert done.returncode == 2, done.stderr
    line = one_line(done)
    assert f"{variable} turns TLS verification off ({option})" in line
    assert "SAGA_TLS_CA_FILE" in line and "SAGA_TLS_INSECURE=1" in line


async def test_insecure_allows_it_and_still_encrypts(servers: Servers) -> None:
    wrong_ca = servers.certs.ca.with_name("other-ca.pem")
    trustme.CA().cert_pem.write_to_path(str(wrong_ca))
    url = servers.redis_url("reader") + "?ssl_cert_reqs=none"
    with pytest.raises(SettingsError):
        tls_context(servers.settings(redis_url=url, tls_ca_file=wrong_ca), "redis")
    # The CA is wrong, and unverified it connects all the same: that is what insecure means.
    settings = servers.settings(redis_url=url, tls_ca_file=wrong_ca, tls_insecure=True)
    async with open_client(settings) as client:
        assert await client.state("nope") is None


# -- TLS mismatches --------------------------------------------------------------------


async def test_a_wrong_ca_is_refused_in_one_line(servers: Servers) -> None:
    other = servers.certs.ca.with_name("another-ca.pem")
    trustme.CA().cert_pem.write_to_path(str(other))
    settings = servers.settings(tls_ca_file=other)
    expected = "its certificate is not signed by a CA we trust"
    with pytest.raises(SettingsError, match=expected):
        await connect_rabbit(settings)
    done = await asyncio.to_thread(
        run_saga, servers.env(SAGA_TLS_CA_FILE=str(other)), "show", "nope"
    )
    assert done.returncode == 2, done.stderr
    line = one_line(done)
    assert f"Redis at localhost:{servers.redis.port}: {expected}" in line
    assert "set SAGA_TLS_CA_FILE (or SAGA_REDIS_TLS_CA_FILE) to the CA that signed it" in line


async def test_a_hostname_the_certificate_does_not_list_is_refused_in_one_line(
    servers: Servers,
) -> None:
    amqp = servers.rabbit.url.replace("@localhost:", "@127.0.0.1:")
    with pytest.raises(SettingsError, match=r"its certificate is not valid for '127\.0\.0\.1'"):
        await connect_rabbit(servers.settings(amqp_url=amqp))
    env = servers.env(SAGA_REDIS_URL=servers.redis_url("reader", host="127.0.0.1"))
    done = await asyncio.to_thread(run_saga, env, "show", "nope")
    assert done.returncode == 2, done.stderr
    line = one_line(done)
    assert "its certificate is not valid for '127.0.0.1'" in line
    assert "connect by a name the certificate lists (its subjectAltName) in SAGA_REDIS_URL" in line


async def test_plaintext_to_a_tls_port_is_refused_in_one_line(servers: Servers) -> None:
    amqp = servers.rabbit.url.replace("amqps://", "amqp://")
    with pytest.raises(SettingsError, match="speaks TLS and SAGA_AMQP_URL is plaintext"):
        await connect_rabbit(servers.settings(amqp_url=amqp))
    env = servers.env(SAGA_REDIS_URL=servers.redis_url("reader", scheme="redis"))
    done = await asyncio.to_thread(run_saga, env, "show", "nope")
    assert done.returncode == 2, done.stderr
    line = one_line(done)
    assert (
        f"Redis at localhost:{servers.redis.port} speaks TLS and SAGA_REDIS_URL is plaintext"
        in line
    )
    assert "write rediss:// in SAGA_REDIS_URL" in line


async def test_tls_to_a_plaintext_port_is_refused_in_one_line(servers: Servers) -> None:
    plain = REDIS_URL.replace("redis://", "rediss://")
    done = await asyncio.to_thread(run_saga, servers.env(SAGA_REDIS_URL=plain), "show", "nope")
    assert done.returncode == 2, done.stderr
    assert "does not speak TLS on this port; write redis:// in SAGA_REDIS_URL" in one_line(done)


async def test_no_client_certificate_is_refused_in_one_line(servers: Servers) -> None:
    settings = servers.settings(tls_cert_file=None, tls_key_file=None)
    with pytest.raises(SettingsError, match="wants a client certificate"):
        await connect_rabbit(settings)


async def test_a_reset_instead_of_the_certificate_alert_is_still_diagnosed(
    servers: Servers,
) -> None:
    # With TLS 1.3 the server refuses a missing client certificate after the client's
    # side of the handshake; a client that wrote its first bytes by then can see a
    # reset instead of the alert (seen on a loaded machine). A handshake that writes
    # nothing, made with the same context, still hears the alert.
    settings = servers.settings(tls_cert_file=None, tls_key_file=None)
    context = tls_context(settings, "amqp")
    problem = await diagnose_tls(
        "RabbitMQ", settings.amqp_url, ConnectionResetError("reset by peer"), context
    )
    assert problem is not None and "wants a client certificate" in problem, problem


# -- Redis ACL users ---------------------------------------------------------------------


async def test_the_default_user_is_off(servers: Servers) -> None:
    client = servers.redis.client()
    try:
        with pytest.raises(AuthenticationError):
            await client.get("x")
    finally:
        await client.aclose()


async def _as(servers: Servers, role: str) -> Any:
    return servers.redis.client(f"{NS}.{role}", PASSWORDS[role])


async def test_a_participant_cannot_read_or_write_saga_state(servers: Servers) -> None:
    participant = await _as(servers, "participant")
    state = f"{NS}:{{{NS}.b0}}:s:some-saga"
    try:
        for call in (
            participant.hgetall(state),
            participant.hset(state, "status", "completed"),
            participant.get(f"{NS}:refused:some-saga"),
            participant.scan(0),
            participant.flushall(),
        ):
            with pytest.raises(NoPermissionError):
                await call
        # Its own records it may use.
        await participant.set(f"{NS}:reply:{{s:step}}:action", b"r", ex=10)
        assert await participant.get(f"{NS}:reply:{{s:step}}:action") == b"r"
    finally:
        await participant.aclose()


async def test_the_reader_reads_and_cannot_write(servers: Servers) -> None:
    reader = await _as(servers, "reader")
    state = f"{NS}:{{{NS}.b0}}:s:some-saga"
    try:
        assert await reader.hgetall(state) == {}
        for call in (
            reader.hset(state, "status", "completed"),
            reader.evalsha("0" * 40, 1, state),
            reader.delete(state),
            reader.get(f"{NS}:reply:{{s:step}}:action"),
        ):
            with pytest.raises(NoPermissionError):
                await call
    finally:
        await reader.aclose()


# -- end to end --------------------------------------------------------------------------


async def test_a_saga_runs_end_to_end_over_tls_with_restricted_users(servers: Servers) -> None:
    """The coordinator and the participants, each with its own Redis user; the
    client, `saga show` and the API read with the reader's."""
    await _acl_log(servers, reset=True)
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(serve_coordinator([saga], servers.settings("coordinator"), stop=stop)),
        asyncio.create_task(
            serve_participants(
                build_services(Ledger(), SystemClock()),
                servers.settings("participant"),
                stop=stop,
            )
        ),
    ]
    try:
        async with open_client(servers.settings("reader")) as client:
            order = {
                "order_id": "tls-1",
                "lines": [{"sku": "book", "quantity": 1}],
                "total_cents": 500,
                "member_id": "m-1",
            }
            saga_id = await _start_when_served(client, order)
            declined = await client.start(saga.name, {**order, "card": "declined"})
            done = await client.wait(saga_id, timeout=60)
            undone = await client.wait(declined, timeout=60)
        assert done is not None and done.status == "completed", done
        assert undone is not None and undone.status == "compensated", undone
        shown = await asyncio.to_thread(run_saga, servers.env("reader"), "show", saga_id)
        assert shown.returncode == 0, shown.stderr
        assert "completed" in shown.stdout
        await _api_reads(servers, saga_id)
        # Nothing was refused on the way: every command each role ran is in its list.
        refused = await _acl_log(servers)
        assert refused == [], refused
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def _api_reads(servers: Servers, saga_id: str) -> None:
    """The REST API, on the reader's Redis user, answers every read."""
    port = free_port()
    token, entry = new_token("viewer-1", "viewer")
    settings = servers.settings(
        "reader", http=f"127.0.0.1:{port}", api_tokens=[msgspec.to_builtins(entry)]
    )
    stop = asyncio.Event()
    task = asyncio.create_task(
        serve_api(settings, api_extras(settings, [saga]), definitions=[saga], stop=stop)
    )
    http = httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}
    )

    async def ready() -> bool | None:
        if task.done():
            raise AssertionError(f"the API stopped: {task.exception()!r}")
        try:
            return True if (await http.get("/readyz")).status_code == 200 else None
        except httpx.TransportError:
            return None

    try:
        await poll("the API to be ready", ready, timeout=30, interval=0.1)
        for path in (
            "/api/sagas/",
            f"/api/sagas/{saga_id}",
            f"/api/sagas/{saga_id}/history",
            "/api/breakers",
            "/api/stuck",
            "/api/definitions",
        ):
            answer = await http.get(path)
            assert answer.status_code == 200, (path, answer.text)
        assert (await http.get(f"/api/sagas/{saga_id}")).json()["status"] == "completed"
    finally:
        stop.set()
        await http.aclose()
        await task


async def _start_when_served(client: Any, order: dict[str, Any]) -> str:
    """Start ``order``: unroutable until the coordinator has bound its queue."""
    for _ in range(300):
        try:
            started: str = await client.start(saga.name, order)
            return started
        except UnroutableError:
            await asyncio.sleep(0.1)
    raise AssertionError("the coordinator never bound its queue")


async def _acl_log(servers: Servers, *, reset: bool = False) -> list[Any]:
    """ACL LOG, read as the test's admin user (``default`` is off)."""
    admin = servers.redis.client("admin", ADMIN_PASSWORD)
    try:
        if reset:
            await admin.acl_log_reset()
            return []
        return list(await admin.acl_log())
    finally:
        await admin.aclose()
