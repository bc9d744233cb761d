"""The mixed-outcomes run as a production deployment would have it: every
connection over verified TLS with client certificates, every process with a
RabbitMQ user of its own and the Redis ACL user of its role, the coordinator
checking who sent each reply and control message.

The users come from the product's own exports (`saga topology --export
--users`, `saga acl --export`), imported into throwaway servers with passwords
set, as an operator would; the participants run one process per service, so
that each logs in as its service's user.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from procs import SAGA, SERVICES, Deployment, poll
from servers import require_program, unavailable
from throwaway import Certs, RabbitServer, RedisServer
from workload import SAGA as SAGA_NAME
from workload import Run, check_at_rest, make_orders, mix_of

from coordinator.ports import DeadLetter
from coordinator.runtime import WRONG_SENDER
from coordinator.service import Settings, open_client

SAGAS = int(os.environ.get("SAGA_E2E_SECURE_SAGAS", "60"))
ADMIN = uuid.uuid4().hex  # the test's own Redis user, to inspect keys and read ACL LOG


class Secure:
    """The throwaway TLS servers, the users' passwords and the URLs of each user."""

    def __init__(self, d: Deployment, certs: Certs, rabbit: RabbitServer, redis: RedisServer):
        self.d, self.certs, self.rabbit, self.redis = d, certs, rabbit, redis
        users = ("coordinator", "operator", *SERVICES)
        self.amqp = {user: uuid.uuid4().hex for user in users}
        self.acl = {role: uuid.uuid4().hex for role in ("coordinator", "participant", "reader")}

    def amqp_url(self, user: str) -> str:
        return f"amqps://{self.d.ns}.{user}:{self.amqp[user]}@localhost:{self.rabbit.port}/"

    def redis_url(self, role: str) -> str:
        return f"rediss://{self.d.ns}.{role}:{self.acl[role]}@localhost:{self.redis.port}/0"


def saga_export(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [SAGA, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"saga {' '.join(args)}: {done.stderr}"
    return done.stdout


@pytest.fixture
async def secure(tmp_path: Path) -> AsyncIterator[Secure]:
    why = RabbitServer.available()
    if why:
        unavailable("a throwaway RabbitMQ", RuntimeError(why))
    require_program("redis-server")
    certs = Certs(tmp_path / "certs")
    tls = {f"SAGA_{k.upper()}": v for k, v in certs.env().items()}
    rabbit = RabbitServer(tmp_path, tls=certs)
    d = Deployment(
        tmp_path,
        # The test's own connections: the brokers' administrators. Each process
        # is given its own user's URLs below.
        amqp_url=rabbit.url,
        env=tls,
        ssl_context=certs.client_context(),
    )
    redis = RedisServer(tmp_path, tls=certs, aclfile=tmp_path / "users.acl")
    s = Secure(d, certs, rabbit, redis)
    d.redis_url = f"rediss://admin:{ADMIN}@localhost:{redis.port}/0"

    # Redis: the namespace's users as `saga acl --export` writes them, plus the test's.
    acl_env = {**d.env, **{f"SAGA_ACL_{r.upper()}_PASSWORD": p for r, p in s.acl.items()}}
    users_acl = saga_export(acl_env, "acl", "--export")
    (tmp_path / "users.acl").write_text(users_acl + f"user admin on >{ADMIN} ~* &* +@all\n")
    try:
        await asyncio.gather(rabbit.start(), redis.start())
        # RabbitMQ: the topology and users of `saga topology --export --users`,
        # which come without passwords; each is given one, as an operator would.
        spec = "coordinator.examples.orders:saga"
        definitions = tmp_path / "definitions.json"
        definitions.write_text(
            saga_export(d.env, "topology", "--export", "--users", "--saga", spec)
        )
        await rabbit.ctl("import_definitions", str(definitions))
        for user, password in s.amqp.items():
            await rabbit.ctl("change_password", f"{d.ns}.{user}", password)
        yield s
    finally:
        await d.stop_all()
        await asyncio.gather(rabbit.stop(), redis.stop())


@pytest.mark.timeout(300)
async def test_mixed_outcomes_over_tls_with_a_user_per_process(secure: Secure) -> None:
    d = secure.d

    async def wrong_senders() -> DeadLetter | None:
        letters = (await d.dead_letters())["coordinator.events"]
        assert all(x.reason == WRONG_SENDER for x in letters), letters
        assert len(letters) <= 1, letters
        return letters[0] if letters else None

    try:
        for _ in range(2):
            d.coordinator(
                amqp_url=secure.amqp_url("coordinator"),
                redis_url=secure.redis_url("coordinator"),
            )
        for service in SERVICES:
            d.participant(
                amqp_url=secure.amqp_url(service),
                redis_url=secure.redis_url("participant"),
                env={"ORDERS_SERVICES": service},
            )
        await d.wait_ready(coordinators=2, participants=1, timeout=90)
        # Every process logged in as its own user, over TLS (the test's own: guest).
        listed = await secure.rabbit.ctl("list_connections", "user", "ssl", "--formatter", "json")
        connections = json.loads(listed)
        assert all(c["ssl"] for c in connections), connections
        logged_in = {c["user"] for c in connections} - {"guest"}
        assert logged_in == {f"{d.ns}.{u}" for u in ("coordinator", *SERVICES)}, connections

        # Declined and out-of-stock orders compensate, flaky ones retry, large
        # ones wait for the operator's approval (a control message).
        mix = mix_of(SAGAS, declined=0.15, out_of_stock=0.05, flaky=0.15, large=0.10)
        orders = make_orders(mix, prefix="secure")
        # The client starts and approves as the operator and reads as the reader.
        settings = Settings(
            namespace=d.ns,
            amqp_url=secure.amqp_url("operator"),
            redis_url=secure.redis_url("reader"),
            timer_interval=timedelta(seconds=d.timer_interval),
            tls_ca_file=secure.certs.ca,
            tls_cert_file=secure.certs.client_cert,
            tls_key_file=secure.certs.client_key,
        )
        async with open_client(settings) as client:
            run = Run(client, orders)
            await run.start_all()
            took = await run.wait_all(timeout=150)
            print(f"{len(orders)} sagas {mix} ended over TLS in {took:.1f} s")
            # No dead letter at all, wrong_sender included.
            await check_at_rest(d, client, run)

            # The check was on (auto, for a user other than guest): a start sent
            # as guest, whom the broker lets publish anything, is refused.
            guest = settings.model_copy(update={"amqp_url": secure.rabbit.url})
            async with open_client(guest) as intruder:
                forged = await intruder.start(SAGA_NAME, {**orders[0].input(), "order_id": "x"})
            letter = await poll("the forged start's dead letter", wrong_senders, timeout=30)
            assert letter.message_id == f"start:{forged}" and "guest" in letter.detail, letter
            assert await client.state(forged) is None

        # No role was refused a command or a key on the way.
        admin = secure.redis.client("admin", ADMIN)
        try:
            refused = await admin.acl_log()
        finally:
            await admin.aclose()
        assert refused == [], refused
    except BaseException:
        print(f"\n===== namespace {d.ns}, logs in {d.tmp}")
        d.dump_logs()
        raise
