"""``saga run`` and ``saga participant`` wait for servers that are not up yet:
they say in one line which one they wait for (the URL without its password),
start when it answers, and run sagas. Here Redis is a throwaway redis-server
started only after the processes said they wait for it, and RabbitMQ is reached
through a forwarder that starts listening only then."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from servers import AMQP_URL, namespace

from coordinator import Settings
from coordinator.adapters.rabbitmq import RabbitTransport
from coordinator.service import connect_rabbit

BIN = Path(sys.executable).parent
SERVICES = ("inventory", "payments", "loyalty", "shipping")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def until(what: str, check: object, timeout: float = 60) -> None:
    """Poll ``check()`` until true; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def forwarder(port: int, to_host: str, to_port: int) -> AsyncIterator[None]:
    """Listen on ``port`` and pipe each connection to ``to_host:to_port``."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(to_host, to_port)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()


class Procs:
    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp, self.env = tmp, env
        self.running: list[tuple[subprocess.Popen[bytes], Path]] = []

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> Path:
        log = self.tmp / f"{args[0]}-{len(self.running)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(BIN / "saga"), *args],
                env={**self.env, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.running.append((proc, log))
        return log

    def alive(self) -> bool:
        return all(p.poll() is None for p, _ in self.running)

    def logs(self) -> str:
        return "\n".join(log.read_text() for _, log in self.running)

    async def stop(self) -> list[int]:
        """SIGTERM each, then poll: the forwarder runs on this loop, so no blocking wait."""
        for proc, _ in self.running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        while any(p.poll() is None for p, _ in self.running) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        codes = []
        for proc, _ in self.running:
            if proc.poll() is None:
                proc.kill()
            codes.append(proc.wait())
        return codes


@pytest.mark.timeout(180)
async def test_both_processes_wait_for_the_servers_and_run_when_they_answer(
    tmp_path: Path,
) -> None:
    ns = namespace()
    redis_port, amqp_port = free_port(), free_port()
    broker = urlsplit(AMQP_URL)
    late_amqp = AMQP_URL.replace(f"{broker.hostname}:{broker.port}", f"127.0.0.1:{amqp_port}")
    late_redis = f"redis://127.0.0.1:{redis_port}/0"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SAGA_")},
        "SAGA_NAMESPACE": ns,
        "SAGA_AMQP_URL": AMQP_URL,
        "SAGA_REDIS_URL": late_redis,
        "SAGA_TIMER_INTERVAL": "0.1",
        "SAGA_HTTP": "127.0.0.1:0",  # a free port each: the processes share the host
        "ORDERS_LEDGER": str(tmp_path / "ledger.sqlite3"),
    }
    procs = Procs(tmp_path, env)
    redis_server: subprocess.Popen[bytes] | None = None
    try:
        participant = procs.spawn("participant", "coordinator.examples.orders.worker:services")
        coordinator = procs.spawn(
            "run", "--saga", "coordinator.examples.orders:saga", env={"SAGA_AMQP_URL": late_amqp}
        )
        masked = late_amqp.replace(f":{broker.password}@", ":***@")
        await until(
            "the coordinator to say it waits for RabbitMQ",
            lambda: (
                f"waiting for RabbitMQ at {masked} (connection refused)" in coordinator.read_text()
            ),
        )
        assert broker.password not in coordinator.read_text().replace("guest:***", "")
        await until(
            "the participant to say it waits for Redis",
            lambda: (
                f"waiting for Redis at {late_redis} (connection refused)" in participant.read_text()
            ),
        )
        assert procs.alive(), procs.logs()
        waiting = [line for line in participant.read_text().splitlines() if "waiting" in line]
        assert all("Traceback" not in line for line in waiting)

        async with forwarder(amqp_port, broker.hostname or "127.0.0.1", broker.port or 5672):
            await until(
                "the coordinator to wait for Redis once RabbitMQ answered",
                lambda: f"waiting for Redis at {late_redis}" in coordinator.read_text(),
            )
            redis_server = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(redis_port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                stdout=subprocess.DEVNULL,
            )
            await until(
                "the participant to run", lambda: "participants running" in participant.read_text()
            )
            await until(
                "the coordinator to run", lambda: "coordinator running" in coordinator.read_text()
            )
            start = await asyncio.create_subprocess_exec(
                str(BIN / "saga"),
                "start",
                "order.place",
                "--id",
                "late",
                "--wait",
                "--json",
                "--data",
                '{"order_id": "late", "lines": [], "total_cents": 1000}',
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            out, err = await start.communicate()
            assert start.returncode == 0, (out + err).decode() + procs.logs()
            assert b'"status":"completed"' in out
            assert "Traceback" not in procs.logs()
            assert await procs.stop() == [0, 0], procs.logs()
    finally:
        await procs.stop()
        if redis_server is not None:
            redis_server.terminate()
            redis_server.wait()
        transport = await RabbitTransport.connect(AMQP_URL, namespace=ns)
        await transport.delete_namespace(
            ["coordinator.events", *(f"{s}.commands" for s in SERVICES)]
        )
        await transport.close()


@pytest.mark.timeout(60)
async def test_the_connection_negotiates_the_heartbeat_setting() -> None:
    """A frozen process's deliveries return when the broker gives up on its
    connection: two to three heartbeats. The setting is what is negotiated."""
    ns = namespace()
    for seconds, expected in (("7", 7), (None, 10)):
        env = {"heartbeat": seconds} if seconds else {}
        settings = Settings(namespace=ns, amqp_url=AMQP_URL, **env)  # type: ignore[arg-type]
        transport = await connect_rabbit(settings)
        try:
            assert transport.heartbeat is not None
            assert transport.heartbeat.total_seconds() == expected
        finally:
            await transport.delete_namespace()
            await transport.close()
