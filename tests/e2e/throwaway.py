"""Throwaway servers for one test: a RabbitMQ node, a Redis, a Redis Cluster.

Each runs on free local ports with its data in the test's tmp directory, as a
subprocess of the test (see `procs.Proc`), and can be killed with SIGKILL and
started again on the same data.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
import subprocess
import time
import uuid
from pathlib import Path

import aio_pika
import trustme
from procs import Proc, free_port, poll, port_open
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, NoPermissionError

from coordinator.adapters.redis import connect_redis

# The wrapper in /usr/sbin switches to the rabbitmq user; this one runs as we are.
RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


class Certs:
    """A CA of the test's own, a server certificate for ``localhost`` only (so
    ``127.0.0.1`` is a wrong hostname), and a client certificate, as PEM files.

    RSA keys: Erlang's ssl and OpenSSL agree on them everywhere.
    """

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.authority = trustme.CA(key_type=trustme.KeyType.RSA)
        server = self.authority.issue_cert("localhost", key_type=trustme.KeyType.RSA)
        client = self.authority.issue_cert(
            "client.test", common_name="guest", key_type=trustme.KeyType.RSA
        )
        self.ca = directory / "ca.pem"
        self.authority.cert_pem.write_to_path(str(self.ca))
        self.server_cert, self.server_key = directory / "server.pem", directory / "server.key"
        server.cert_chain_pems[0].write_to_path(str(self.server_cert))
        server.private_key_pem.write_to_path(str(self.server_key))
        self.client_cert, self.client_key = directory / "client.pem", directory / "client.key"
        client.cert_chain_pems[0].write_to_path(str(self.client_cert))
        client.private_key_pem.write_to_path(str(self.client_key))

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context

    def env(self) -> dict[str, str]:
        """The settings that point the coordinator at these files."""
        return {
            "tls_ca_file": str(self.ca),
            "tls_cert_file": str(self.client_cert),
            "tls_key_file": str(self.client_key),
        }


class RabbitServer:
    """A RabbitMQ node of its own (own port, node name, data and log directories).

    Started in the foreground from ``/usr/lib/rabbitmq/bin/rabbitmq-server``
    with the system's config and env files replaced by ours, no plugins (so
    no management listener), and the system's epmd. Killing and restarting it
    keeps its Mnesia directory, so durable queues and persistent messages
    survive.
    """

    def __init__(self, tmp: Path, *, tls: Certs | None = None) -> None:
        self.tls = tls
        self.dir = tmp / "rabbitmq"
        self.port = free_port(plus=(20000,))
        self.dist_port = self.port + 20000
        self.node = f"rabbit-e2e-{uuid.uuid4().hex[:8]}@localhost"
        home = self.dir / "home"
        for sub in ("mnesia", "log", "home", "plugins-expand"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq-env.conf").write_text("")
        if tls is None:
            conf = f"listeners.tcp.local = 127.0.0.1:{self.port}\n"
        else:  # TLS only, client certificates required (security.md §4.2)
            conf = (
                "listeners.tcp = none\n"
                f"listeners.ssl.default = 127.0.0.1:{self.port}\n"
                f"ssl_options.cacertfile = {tls.ca}\n"
                f"ssl_options.certfile = {tls.server_cert}\n"
                f"ssl_options.keyfile = {tls.server_key}\n"
                "ssl_options.verify = verify_peer\n"
                "ssl_options.fail_if_no_peer_cert = true\n"
                "ssl_options.versions.1 = tlsv1.3\n"
                "ssl_options.versions.2 = tlsv1.2\n"
            )
        (self.dir / "rabbitmq.conf").write_text(conf + "loopback_users = none\n")
        # A cookie of its own: the node never talks to the system's broker.
        (home / ".erlang.cookie").write_text(uuid.uuid4().hex.upper())
        (home / ".erlang.cookie").chmod(0o400)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "SAGA_"))},
            "HOME": str(home),
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_LOGS": "-",
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(self.dir / "plugins-expand"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
        self.env = env
        self.proc = Proc(
            "rabbitmq", [RABBITMQ_SERVER], env=env, log_dir=tmp, cwd=self.dir, group=True
        )
        self.url = (
            f"amqp://guest:guest@127.0.0.1:{self.port}/"
            if tls is None
            else f"amqps://guest:guest@localhost:{self.port}/"
        )

    @staticmethod
    def available() -> str | None:
        """Why a throwaway broker cannot run here, or None."""
        if not Path(RABBITMQ_SERVER).exists():
            return f"{RABBITMQ_SERVER} is not installed (apt install rabbitmq-server)"
        return None  # our own HOME, directories and config: no root needed

    async def start(self, timeout: float = 90) -> float:
        """Start (or restart) the node; returns how long it took to accept AMQP."""
        began = time.monotonic()
        self.proc.start()
        await poll(
            f"RabbitMQ {self.node} on port {self.port}",
            self._amqp_ok,
            timeout=timeout,
            interval=0.3,
            describe=lambda: self.proc.tail(30),
        )
        return time.monotonic() - began

    async def _amqp_ok(self) -> bool | None:
        if not self.proc.alive:
            raise AssertionError(f"rabbitmq-server exited: {self.proc.tail(30)}")
        if not port_open(self.port):
            return None
        context = self.tls.client_context() if self.tls else None
        connection = await aio_pika.connect(self.url, timeout=3, ssl_context=context)
        await connection.close()
        return True

    def kill(self) -> None:
        self.proc.kill()

    async def stop(self) -> None:
        await self.proc.stop(timeout=20)

    async def messages(self) -> dict[str, int]:
        """Messages per queue, ready and unacknowledged: all the broker holds.

        Through rabbitmqctl, since AMQP tells only the ready ones, and a stopped
        consumer's prefetched commands are unacknowledged.
        """
        out = await self.ctl("list_queues", "name", "messages", "--formatter", "json")
        return {q["name"]: int(q["messages"]) for q in json.loads(out)}

    async def ctl(self, *args: str) -> str:
        """``rabbitmqctl ARGS`` against this node; its output (it must succeed)."""
        ctl = await asyncio.create_subprocess_exec(
            str(Path(RABBITMQ_SERVER).with_name("rabbitmqctl")),
            *("-q", "-n", self.node, *args),
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await ctl.communicate()
        assert ctl.returncode == 0, f"rabbitmqctl {args[0]}: {err.decode()}{out.decode()}"
        return out.decode()


class RedisServer:
    """A redis-server of its own: AOF with fsync on every write, in its own directory."""

    def __init__(
        self,
        tmp: Path,
        name: str = "redis",
        *,
        cluster: bool = False,
        tls: Certs | None = None,
        aclfile: Path | None = None,
    ) -> None:
        self.tls = tls
        self.dir = tmp / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port(plus=(10000,) if cluster else ())
        port = ["--port", str(self.port)]
        if tls is not None:  # TLS only, client certificates required (the default)
            port = [
                "--port", "0",
                "--tls-port", str(self.port),
                "--tls-cert-file", str(tls.server_cert),
                "--tls-key-file", str(tls.server_key),
                "--tls-ca-cert-file", str(tls.ca),
            ]  # fmt: skip
        argv = [
            shutil.which("redis-server") or "redis-server",
            *port,
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--save", "",
            "--protected-mode", "no",
        ]  # fmt: skip
        if cluster:
            argv += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        if aclfile is not None:
            argv += ["--aclfile", str(aclfile)]
        self.proc = Proc(name, argv, env=dict(os.environ), log_dir=tmp, cwd=self.dir)
        self.url = (
            f"redis://127.0.0.1:{self.port}/0"
            if tls is None
            else f"rediss://localhost:{self.port}/0"
        )

    async def start(self, timeout: float = 30) -> None:
        self.proc.start()

        async def ping() -> bool | None:
            if not self.proc.alive:
                raise AssertionError(f"redis-server exited: {self.proc.tail(20)}")
            client = self.client()
            try:
                # A restarted server answers LOADING until its AOF is read back.
                return True if await client.ping() else None
            except (AuthenticationError, NoPermissionError):
                return True  # it answers: the ACL file turned the default user off
            finally:
                await client.aclose()

        await poll(f"redis on {self.port}", ping, timeout=timeout, interval=0.1)

    def client(self, username: str | None = None, password: str | None = None) -> Redis:
        """A client of this server (over TLS with the client certificate if TLS)."""
        client = Redis.from_url(self.url, username=username, password=password)
        if self.tls is not None:
            client = connect_redis(self.url, self.tls.client_context())
            client.connection_pool.connection_kwargs.update(username=username, password=password)
        return client

    def kill(self) -> None:
        self.proc.kill()

    async def stop(self) -> None:
        await self.proc.stop(timeout=10)


class RedisClusterServers:
    """A three-primary Redis Cluster on local ports, created with ``redis-cli --cluster``."""

    def __init__(self, tmp: Path, size: int = 3) -> None:
        self.tmp = tmp
        self.nodes: list[RedisServer] = []
        ports: set[int] = set()
        for i in range(size):
            node = RedisServer(tmp, f"redis-cluster-{i}", cluster=True)
            while node.port in ports:  # free_port may hand out the same port twice
                node = RedisServer(tmp, f"redis-cluster-{i}", cluster=True)
            ports.add(node.port)
            self.nodes.append(node)
        self.url = f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    async def start(self) -> None:
        for node in self.nodes:
            await node.start()
        create = subprocess.run(
            [
                shutil.which("redis-cli") or "redis-cli",
                "--cluster",
                "create",
                *[f"127.0.0.1:{n.port}" for n in self.nodes],
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert create.returncode == 0, f"cluster create failed: {create.stdout}\n{create.stderr}"

        async def cluster_ok() -> bool | None:
            for node in self.nodes:
                client = Redis.from_url(node.url)
                try:
                    info = await client.execute_command("CLUSTER", "INFO")
                finally:
                    await client.aclose()
                text = info.decode() if isinstance(info, bytes) else str(info)
                if "cluster_state:ok" not in text:
                    return None
            return True

        await poll("the Redis Cluster to be ok", cluster_ok, timeout=30)

    async def stop(self) -> None:
        await asyncio.gather(*(n.stop() for n in self.nodes))

    @property
    def procs(self) -> list[Proc]:
        return [n.proc for n in self.nodes]
