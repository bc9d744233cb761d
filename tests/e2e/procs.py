"""Processes of an end-to-end run: coordinator replicas and participant workers,
each a real subprocess (the throwaway servers are in ``throwaway.py``).

Every process writes its output to a log file in the test's tmp directory;
`Deployment.dump_logs` prints their tails when a test fails. Processes are
started in a session of their own, so that a broker's shell wrapper and its
Erlang VM are signalled together, and they are always stopped at teardown:
SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aio_pika
import aiormq
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from servers import AMQP_URL, REDIS_URL, namespace, unavailable

from coordinator import Settings
from coordinator.adapters.rabbitmq import RabbitDeadLetters, RabbitTransport
from coordinator.adapters.redis import connect_redis
from coordinator.ports import DeadLetter

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SAGA = str(BIN / "saga")

# The queues the order example uses (without the namespace).
SERVICES = ("inventory", "payments", "loyalty", "shipping")
# The order saga with steps that outwait the outages the tests inject.
PATIENT_SAGA = "patient_orders:saga"
QUEUES = ("coordinator.events", *(f"{s}.commands" for s in SERVICES))

T = TypeVar("T")


# -- small utilities ----------------------------------------------------------------


def free_port(*, plus: Sequence[int] = ()) -> int:
    """A free TCP port on 127.0.0.1 such that ``port + p`` is free too for each ``p``."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + max(plus, default=0) > 65535:
            continue
        if all(_port_free(port + p) for p in plus):
            return port
    raise RuntimeError("no free port pair found")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


async def poll(
    what: str,
    probe: Callable[[], Awaitable[T | None]],
    *,
    timeout: float,
    interval: float = 0.2,
    describe: Callable[[], str] | None = None,
) -> T:
    """Call ``probe`` until it returns something other than None.

    Errors count as None (a server may be restarting), except an AssertionError:
    a probe raises one to stop at once (the server it waits for has exited).
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            found = await probe()
        except AssertionError:
            raise
        except Exception as exc:  # a server may be restarting: keep polling
            last_error = exc
            found = None
        if found is not None:
            return found
        if time.monotonic() > deadline:
            extra = describe() if describe else ""
            raise AssertionError(
                f"timed out after {timeout:.0f} s waiting for {what}"
                + (f" (last error: {last_error!r})" if last_error else "")
                + (f"\n{extra}" if extra else "")
            )
        await asyncio.sleep(interval)


async def retry(what: str, job: Callable[[], Awaitable[T]], *, timeout: float) -> T:
    """Run ``job`` until it does not raise (a server may be restarting)."""
    deadline = time.monotonic() + timeout
    delay = 0.1
    while True:
        try:
            return await job()
        except Exception as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} kept failing for {timeout:.0f} s: {exc!r}") from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


def servers_up(amqp_url: str = AMQP_URL, redis_url: str = REDIS_URL) -> None:
    """Fail in CI, skip elsewhere, when the shared test servers are not there."""
    for url, what, default in ((amqp_url, "RabbitMQ", 5672), (redis_url, "Redis", 6379)):
        parts = urlsplit(url.replace("redis+cluster://", "redis://"))
        if not port_open(parts.port or default, parts.hostname or "127.0.0.1"):
            unavailable(what, ConnectionRefusedError(url))


# -- processes ----------------------------------------------------------------------


_NO_BRACES = str.maketrans("", "", "{}")


class Proc:
    """One subprocess (restartable), its output appended to ``log``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        log_dir: Path,
        cwd: Path = ROOT,
        group: bool = False,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.cwd = cwd
        self.log = log_dir / f"{name}.log"
        self.group = group  # signal the whole process group (a shell wrapper and its child)
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.exit_codes: list[int] = []

    def __repr__(self) -> str:
        return f"<Proc {self.name} pid={self.pid} alive={self.alive}>"

    def start(self) -> Proc:
        assert not self.alive, f"{self.name} is already running"
        self.starts += 1
        with self.log.open("ab") as out:
            stamp = time.strftime("%H:%M:%S")
            out.write(f"\n===== {stamp} start #{self.starts}: {' '.join(self.argv)}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll() if self.popen else None

    def send(self, sig: int) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            if self.group:
                os.killpg(self.popen.pid, sig)  # its own session: pgid == pid
            else:
                self.popen.send_signal(sig)

    def kill(self) -> int:
        """SIGKILL (the whole group, always) and reap it."""
        assert self.popen is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        code = self.popen.wait(timeout=30)
        self.exit_codes.append(code)
        return code

    async def wait(self, timeout: float) -> int | None:
        """The exit code, or None if still running after ``timeout`` seconds."""
        assert self.popen is not None
        deadline = time.monotonic() + timeout
        while self.popen.poll() is None:
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.05)
        return self.popen.returncode

    async def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM; SIGKILL if it has not exited after ``timeout`` seconds."""
        if self.popen is None:
            return 0
        if self.popen.poll() is not None:
            return self.popen.returncode
        self.send(signal.SIGTERM)
        code = await self.wait(timeout)
        if code is None:
            with self.log.open("ab") as out:
                out.write(f"\n===== not stopped {timeout} s after SIGTERM: SIGKILL\n".encode())
            return self.kill()
        # Whatever it left in its group (a broker's Erlang VM) goes too.
        if self.group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
        self.exit_codes.append(code)
        return code

    def tail(self, lines: int = 60) -> str:
        if not self.log.exists():
            return "(no log)"
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


# -- a deployment: coordinators and participants in one namespace --------------------


class Deployment:
    """Coordinator replicas and participant processes sharing a fresh namespace."""

    def __init__(
        self,
        tmp: Path,
        *,
        amqp_url: str = AMQP_URL,
        redis_url: str = REDIS_URL,
        timer_interval: float = 0.1,
        env: dict[str, str] | None = None,
        saga: str = "coordinator.examples.orders:saga",
        step_timeout: float | None = None,
        step_attempts: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``env`` is added to every process's environment; ``ssl_context`` is the
        test's own, for ``amqps://`` and ``rediss://`` URLs (the processes take
        theirs from ``SAGA_TLS_*`` in ``env``). ``saga`` is the
        definition the coordinators run: the example's, or ``PATIENT_SAGA`` for a
        test whose outages may outlast its 10 s steps. ``step_timeout`` and
        ``step_attempts`` run them on `tolerant.saga` instead: the example saga
        with that timeout for every step and at least that many attempts."""
        self.tmp = tmp
        self.ns = namespace()
        self.amqp_url = amqp_url
        self.redis_url = redis_url
        self.ssl_context = ssl_context
        self.timer_interval = timer_interval
        self.ledger_path = tmp / "ledger.sqlite3"
        base = {k: v for k, v in os.environ.items() if not k.startswith("SAGA_")}
        self.env = {
            **base,
            "SAGA_NAMESPACE": self.ns,
            "SAGA_AMQP_URL": amqp_url,
            "SAGA_REDIS_URL": redis_url,
            "SAGA_TIMER_INTERVAL": str(timer_interval),
            # /metrics and the probes on a free port each: the processes share the host.
            "SAGA_HTTP": "127.0.0.1:0",
            "ORDERS_LEDGER": str(self.ledger_path),
            "PYTHONUNBUFFERED": "1",
            # patient_orders (PATIENT_SAGA) and tolerant live next to this file.
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(Path(__file__).parent), base.get("PYTHONPATH")) if p
            ),
            **(env or {}),
        }
        self.saga = saga
        if step_timeout is not None or step_attempts is not None:
            self.saga = "tolerant:saga"
            if step_timeout is not None:
                self.env["ORDERS_STEP_TIMEOUT"] = str(step_timeout)
            if step_attempts is not None:
                self.env["ORDERS_STEP_ATTEMPTS"] = str(step_attempts)
        self.procs: list[Proc] = []
        self._names: dict[str, int] = {}

    @property
    def settings(self) -> Settings:
        return Settings(
            namespace=self.ns,
            amqp_url=self.amqp_url,
            redis_url=self.redis_url,
            timer_interval=self.timer_interval,
        )

    def _proc(
        self,
        kind: str,
        argv: Sequence[str],
        *,
        amqp_url: str | None,
        redis_url: str | None,
        env: dict[str, str] | None,
    ) -> Proc:
        n = self._names.get(kind, 0)
        self._names[kind] = n + 1
        own = dict(self.env)
        if amqp_url is not None:
            own["SAGA_AMQP_URL"] = amqp_url
        if redis_url is not None:
            own["SAGA_REDIS_URL"] = redis_url
        own.update(env or {})
        proc = Proc(f"{kind}-{n}", argv, env=own, log_dir=self.tmp)
        self.procs.append(proc)
        return proc.start()

    def coordinator(
        self,
        *,
        amqp_url: str | None = None,
        redis_url: str | None = None,
        env: dict[str, str] | None = None,
        sagas: Sequence[str] = (),
    ) -> Proc:
        """A replica; the URLs (a proxy's), ``env`` and ``sagas`` (the definitions it
        runs, ``self.saga`` by default) are for this process only."""
        argv = [SAGA, "run", *(a for s in sagas or [self.saga] for a in ("--saga", s))]
        return self._proc("coordinator", argv, amqp_url=amqp_url, redis_url=redis_url, env=env)

    def participant(
        self,
        *,
        amqp_url: str | None = None,
        redis_url: str | None = None,
        env: dict[str, str] | None = None,
        services: str = "coordinator.examples.orders.worker:services",
    ) -> Proc:
        """A participant process; the URLs and ``env`` are for this process only."""
        argv = [SAGA, "participant", services]
        return self._proc("participant", argv, amqp_url=amqp_url, redis_url=redis_url, env=env)

    @property
    def coordinators(self) -> list[Proc]:
        return [p for p in self.procs if p.name.startswith("coordinator") and p.alive]

    @property
    def participants(self) -> list[Proc]:
        return [p for p in self.procs if p.name.startswith("participant") and p.alive]

    async def consumers(self) -> dict[str, int] | None:
        """Consumers per queue of the namespace (None for a queue not declared yet)."""
        names = [f"{self.ns}.{q}" for q in QUEUES]
        states = await queue_states(self.amqp_url, names, ssl_context=self.ssl_context)
        return {q: (s[1] if s else 0) for q, s in zip(QUEUES, states.values(), strict=True)}

    async def wait_ready(
        self, *, coordinators: int, participants: int, timeout: float = 60
    ) -> None:
        """Until that many coordinators and participant processes consume their queues."""

        async def probe() -> bool | None:
            counts = await self.consumers()
            if counts is None:
                return None
            ok = counts["coordinator.events"] >= coordinators and all(
                counts[f"{s}.commands"] >= participants for s in SERVICES
            )
            return True if ok else None

        await poll(
            f"{coordinators} coordinator(s) and {participants} participant(s) to consume",
            probe,
            timeout=timeout,
            describe=self.describe,
        )

    async def claims(self) -> list[str]:
        """Idempotency keys a participant holds right now (its handler is running)."""
        prefix = f"{self.ns}:claim:"
        keys = await redis_keys(
            self.redis_url, self.ns, match=f"{prefix}*", ssl_context=self.ssl_context
        )
        # ``{saga:step}:kind``: the hash tag dropped, the idempotency key is left.
        return sorted(k.decode().removeprefix(prefix).translate(_NO_BRACES) for k in keys)

    async def freeze(self, proc: Proc, *, inside_handler: bool, timeout: float = 60) -> list[str]:
        """Stop ``proc`` (SIGSTOP) at a moment chosen by what it is doing.

        It is frozen and its claims read from Redis; it stays frozen if it
        holds one (a handler between its claim and its recorded reply) and
        ``inside_handler``, or if it holds none and not ``inside_handler``;
        otherwise it is thawed and tried again. Returns the keys it holds.
        """
        deadline = time.monotonic() + timeout
        while True:
            proc.send(signal.SIGSTOP)
            held = await self.claims()
            if bool(held) == inside_handler:
                return held
            proc.send(signal.SIGCONT)
            if time.monotonic() > deadline:
                where = "inside" if inside_handler else "outside"
                raise AssertionError(f"{proc.name} was never caught {where} a handler")
            await asyncio.sleep(0.02)

    async def kill_participant(
        self, proc: Proc, *, inside_handler: bool, timeout: float = 60
    ) -> list[str]:
        """SIGKILL ``proc`` inside a handler, or between two; returns the keys it held."""
        held = await self.freeze(proc, inside_handler=inside_handler, timeout=timeout)
        proc.kill()
        return held

    def describe(self) -> str:
        return "\n".join(repr(p) for p in self.procs)

    async def stop_all(self, timeout: float = 10.0) -> dict[str, int | BaseException]:
        """Stop every process (SIGTERM, SIGKILL after ``timeout``); exit code per name."""
        procs = [p for p in self.procs if p.popen is not None]
        for proc in procs:
            proc.send(signal.SIGCONT)  # one left frozen by a failed test would ignore SIGTERM
        codes = await asyncio.gather(*(p.stop(timeout) for p in procs), return_exceptions=True)
        return {p.name: c for p, c in zip(procs, codes, strict=True)}

    def dump_logs(self, lines: int = 80) -> None:
        for proc in self.procs:
            print(f"\n----- {proc.name} (exit codes {proc.exit_codes}) {proc.log} -----")
            print(proc.tail(lines))

    async def dead_letters(self) -> dict[str, list[DeadLetter]]:
        """The dead letters of every queue of the namespace (left in place)."""
        transport = await RabbitTransport.connect(
            self.amqp_url, namespace=self.ns, ssl_context=self.ssl_context
        )
        try:
            dead = RabbitDeadLetters(transport)
            return {q: list(await dead.list(q, limit=1000)) for q in QUEUES}
        finally:
            await transport.close()

    async def cleanup(self) -> None:
        """Delete the namespace: its Redis keys, its queues and exchanges."""
        errors: list[str] = []
        try:
            await drop_redis_keys(self.redis_url, self.ns, ssl_context=self.ssl_context)
        except Exception as exc:
            errors.append(f"redis: {exc!r}")
        try:
            transport = await RabbitTransport.connect(
                self.amqp_url, namespace=self.ns, ssl_context=self.ssl_context
            )
            try:
                await transport.delete_namespace(queues=QUEUES)
            finally:
                await transport.close()
        except Exception as exc:
            errors.append(f"rabbitmq: {exc!r}")
        if errors:
            print(f"cleanup of namespace {self.ns} incomplete: {errors}")


async def queue_states(
    amqp_url: str, names: Iterable[str], *, ssl_context: ssl.SSLContext | None = None
) -> dict[str, tuple[int, int] | None]:
    """``(ready messages, consumers)`` per queue, None for a queue that does not exist."""
    found: dict[str, tuple[int, int] | None] = {}
    connection = await aio_pika.connect(amqp_url, timeout=5, ssl_context=ssl_context)
    async with connection:
        for name in names:
            channel = await connection.channel()
            try:
                queue = await channel.declare_queue(name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                found[name] = None
                continue
            result = queue.declaration_result
            found[name] = (int(result.message_count or 0), int(result.consumer_count or 0))
            await channel.close()
    return found


def redis_client(url: str, ssl_context: ssl.SSLContext | None = None) -> Any:
    if url.startswith("redis+cluster://"):
        return RedisCluster.from_url("redis://" + url.removeprefix("redis+cluster://"))
    if ssl_context is not None:
        return connect_redis(url, ssl_context)
    return Redis.from_url(url)


async def redis_keys(
    url: str,
    ns: str,
    *,
    match: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> list[bytes]:
    """The keys of namespace ``ns`` (or those matching ``match``), on every primary."""
    pattern = match or f"{ns}:*"
    client = redis_client(url, ssl_context)
    try:
        if isinstance(client, RedisCluster):
            keys: list[bytes] = []
            for node in client.get_primaries():
                scan = client.scan_iter(match=pattern, count=1000, target_nodes=node)
                keys += [k async for k in scan]
            return keys
        return [k async for k in client.scan_iter(match=pattern, count=1000)]
    finally:
        await client.aclose()


async def drop_redis_keys(url: str, ns: str, *, ssl_context: ssl.SSLContext | None = None) -> None:
    keys = await redis_keys(url, ns, ssl_context=ssl_context)
    client = redis_client(url, ssl_context)
    try:
        for key in keys:  # one by one: on a cluster they live on different slots
            await client.delete(key)
    finally:
        await client.aclose()
