"""A fault-injecting TCP proxy, put between the processes and Redis or RabbitMQ.

toxiproxy is not installable here, so this is the one piece of test
infrastructure we write ourselves rather than take from a library. It runs in
the test's event loop (every chaos test is async) and is told, while it runs,
to inject one or more faults:

- ``latency(up=, down=)``: each chunk is forwarded that many seconds after it
  was read, per direction (``up`` is client -> server, ``down`` server ->
  client); chunks keep their order and the stream's throughput is unchanged.
- ``bandwidth(bytes_per_second, direction=)``: at most that rate per connection.
- ``blackhole(up=, down=)``: connections are accepted and kept open but
  nothing is forwarded: what is sent is held, as a partitioned network's
  buffers hold it, and delivered when ``heal()`` ends the blackhole.
- ``reset()``: every open connection is reset (RST on both sides: SO_LINGER 0,
  then closed), as a crashed middlebox or a killed peer does.
- ``refuse()``: every open connection is reset and every new one too, as soon
  as it is accepted, as a server that is down (or restarting) does.
- ``drop_replies(fraction)``: the server's answer to a request is read and
  thrown away, and then the connection is reset. The request reached the
  server and ran there; the client never hears back. One dropped read per
  connection, since a stream that silently lost a reply is out of step with
  its client (RESP has no ids to realign on), which no real failure produces.

``heal()`` removes every fault. ``stats`` counts what was done, so that a test
can check its fault really happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

CHUNK = 64 * 1024

Chunks = asyncio.Queue[tuple[float, bytes]]  # (when to forward, data); b'' ends


@dataclass
class Stats:
    accepted: int = 0
    resets: int = 0
    dropped_replies: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


@dataclass
class _Faults:
    latency: dict[str, float] = field(default_factory=lambda: {"up": 0.0, "down": 0.0})
    rate: dict[str, float | None] = field(default_factory=lambda: {"up": None, "down": None})
    drop_fraction: float = 0.0
    refusing: bool = False


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN: linger on, timeout 0."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Link:
    """One client connection and its connection to the server."""

    def __init__(
        self,
        proxy: Proxy,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        server: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.proxy = proxy
        self.client_reader, self.client_writer = client
        self.server_reader, self.server_writer = server
        self.closed = False

    def start(self) -> None:
        for direction, reader, writer in (
            ("up", self.client_reader, self.server_writer),
            ("down", self.server_reader, self.client_writer),
        ):
            queue: Chunks = asyncio.Queue()
            for job in (
                self._read(direction, reader, queue),
                self._write(direction, writer, queue),
            ):
                task = asyncio.create_task(job)
                self.proxy._tasks.add(task)
                task.add_done_callback(self.proxy._tasks.discard)

    async def _read(self, direction: str, reader: asyncio.StreamReader, queue: Chunks) -> None:
        try:
            while data := await reader.read(CHUNK):
                if direction == "down" and self.proxy._should_drop():
                    # The server answered: the request ran. Throw the answer away
                    # and reset, so the client sees a lost connection, not a
                    # stream out of step.
                    self.proxy.stats.dropped_replies += 1
                    self.reset()
                    return
                queue.put_nowait((time.monotonic() + self.proxy._faults.latency[direction], data))
        except (ConnectionError, OSError):
            pass
        queue.put_nowait((0.0, b""))  # end of stream

    async def _write(self, direction: str, writer: asyncio.StreamWriter, queue: Chunks) -> None:
        flowing = self.proxy._flowing[direction]
        try:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await flowing.wait()
                writer.write(data)
                await writer.drain()
                if direction == "up":
                    self.proxy.stats.bytes_up += len(data)
                else:
                    self.proxy.stats.bytes_down += len(data)
                rate = self.proxy._faults.rate[direction]
                if rate:
                    await asyncio.sleep(len(data) / rate)
        except (ConnectionError, OSError):
            pass
        # One side ended: end the other too (a half-open link helps no test).
        self.close()

    def reset(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.proxy.stats.resets += 1
        _reset(self.client_writer)
        _reset(self.server_writer)
        self.proxy._links.discard(self)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for writer in (self.client_writer, self.server_writer):
            with contextlib.suppress(Exception):
                writer.close()
        self.proxy._links.discard(self)


class Proxy:
    """A TCP proxy from 127.0.0.1:<port> to ``upstream`` (``host:port`` or a URL)."""

    def __init__(self, upstream: str, *, name: str = "proxy", seed: int = 0) -> None:
        parts = urlsplit(upstream if "://" in upstream else f"tcp://{upstream}")
        self.upstream_url = upstream
        self.upstream = (parts.hostname or "127.0.0.1", int(parts.port or 0))
        self.name = name
        self.stats = Stats()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._faults = _Faults()
        self._flowing = {"up": asyncio.Event(), "down": asyncio.Event()}
        for event in self._flowing.values():
            event.set()
        self._rng = random.Random(seed)

    def __repr__(self) -> str:
        return f"<Proxy {self.name} :{self.port} -> {self.upstream[0]}:{self.upstream[1]}>"

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    @property
    def url(self) -> str:
        """The upstream URL with the proxy's address in it (credentials and path kept)."""
        parts = urlsplit(self.upstream_url)
        auth = ""
        if parts.username:
            auth = parts.username + (f":{parts.password}" if parts.password else "") + "@"
        return urlunsplit(parts._replace(netloc=f"{auth}127.0.0.1:{self.port}"))

    @property
    def connections(self) -> int:
        return len(self._links)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.close()
        # Closed or reset links may still have a pump waiting on a blackhole.
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def __aenter__(self) -> Proxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.accepted += 1
        if self._faults.refusing:
            self.stats.resets += 1
            _reset(writer)
            return
        try:
            server = await asyncio.open_connection(*self.upstream)
        except OSError:
            _reset(writer)
            return
        link = _Link(self, (reader, writer), server)
        self._links.add(link)
        link.start()

    def _should_drop(self) -> bool:
        fraction = self._faults.drop_fraction
        return fraction > 0 and self._rng.random() < fraction

    # -- faults ----------------------------------------------------------------------

    def latency(self, *, up: float = 0.0, down: float = 0.0) -> None:
        self._faults.latency = {"up": up, "down": down}

    def bandwidth(self, bytes_per_second: float | None, *, direction: str = "both") -> None:
        for d in ("up", "down") if direction == "both" else (direction,):
            self._faults.rate[d] = bytes_per_second

    def blackhole(self, *, up: bool = True, down: bool = True) -> None:
        if up:
            self._flowing["up"].clear()
        if down:
            self._flowing["down"].clear()

    def drop_replies(self, fraction: float) -> None:
        self._faults.drop_fraction = fraction

    def refuse(self) -> None:
        self._faults.refusing = True
        self.reset()

    def reset(self) -> int:
        """Reset every open connection; returns how many."""
        links = list(self._links)
        for link in links:
            link.reset()
        return len(links)

    def heal(self) -> None:
        """No more faults; what a blackhole held is delivered now."""
        self._faults = _Faults()
        for event in self._flowing.values():
            event.set()
