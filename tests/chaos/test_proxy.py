"""The fault-injecting proxy itself, against the shared Redis: each fault does
what it says (it delays, holds, resets, drops a reply of a command that ran)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from proxy import Proxy
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from servers import REDIS_URL

pytestmark = pytest.mark.timeout(60)


async def resp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *args: str) -> bytes:
    """Send one command in RESP and read one line of reply."""
    writer.write(
        f"*{len(args)}\r\n".encode()
        + b"".join(f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args)
    )
    await writer.drain()
    return await reader.readline()


@pytest.fixture
async def redis_proxy(proxies: Callable[..., object], redis_client: Redis) -> Proxy:
    # redis_client: fails in CI, skips elsewhere, when Redis is not there
    return await proxies(REDIS_URL, name="redis")  # type: ignore[misc, no-any-return]


async def test_forwards_both_ways(redis_proxy: Proxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", redis_proxy.port)
    assert await resp(reader, writer, "PING") == b"+PONG\r\n"
    assert redis_proxy.url == f"redis://127.0.0.1:{redis_proxy.port}/0"
    writer.close()


async def test_latency_delays_each_direction(redis_proxy: Proxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", redis_proxy.port)
    redis_proxy.latency(up=0.2, down=0.3)
    began = time.monotonic()
    assert await resp(reader, writer, "PING") == b"+PONG\r\n"
    assert time.monotonic() - began >= 0.5  # a lower bound: the proxy held it that long
    redis_proxy.heal()
    writer.close()


async def test_bandwidth_is_capped(redis_proxy: Proxy, ns: str, redis_client: Redis) -> None:
    value = "x" * 200_000
    await redis_client.set(f"{ns}:big", value)
    client = Redis.from_url(redis_proxy.url)
    try:
        redis_proxy.bandwidth(1_000_000, direction="down")
        began = time.monotonic()
        assert await client.get(f"{ns}:big") == value.encode()
        assert time.monotonic() - began >= 0.15  # 200 kB at 1 MB/s, less the first chunk
    finally:
        await client.aclose()


async def test_blackhole_holds_everything_until_healed(
    redis_proxy: Proxy, ns: str, redis_client: Redis
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", redis_proxy.port)
    redis_proxy.blackhole()
    pending = asyncio.create_task(resp(reader, writer, "INCR", f"{ns}:n"))
    done, _ = await asyncio.wait({pending}, timeout=1.0)
    assert not done  # no answer, and the connection stays open
    assert redis_proxy.connections == 1
    assert await redis_client.get(f"{ns}:n") is None  # nor did the command reach Redis
    # A connection made during the blackhole is accepted and silent too.
    reader2, writer2 = await asyncio.open_connection("127.0.0.1", redis_proxy.port)
    second = asyncio.create_task(resp(reader2, writer2, "PING"))
    done, _ = await asyncio.wait({second}, timeout=0.5)
    assert not done
    redis_proxy.heal()
    assert await pending == b":1\r\n"
    assert await second == b"+PONG\r\n"
    writer.close()
    writer2.close()


async def test_blackhole_of_one_direction(redis_proxy: Proxy, ns: str, redis_client: Redis) -> None:
    """Only the replies are held: the command runs, its answer comes on heal."""
    reader, writer = await asyncio.open_connection("127.0.0.1", redis_proxy.port)
    redis_proxy.blackhole(up=False, down=True)
    pending = asyncio.create_task(resp(reader, writer, "INCR", f"{ns}:n"))

    async def ran() -> None:
        while await redis_client.get(f"{ns}:n") != b"1":
            await asyncio.sleep(0.02)

    await asyncio.wait_for(ran(), 10)
    assert not pending.done()
    redis_proxy.heal()
    assert await pending == b":1\r\n"
    writer.close()


async def test_reset_sends_rst_to_the_client(redis_proxy: Proxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", redis_proxy.port)
    assert await resp(reader, writer, "PING") == b"+PONG\r\n"
    assert redis_proxy.reset() == 1
    with pytest.raises(ConnectionResetError):  # an RST, not an orderly end of stream
        await reader.read(1)
    assert redis_proxy.connections == 0
    # New connections go through as before.
    reader, writer = await asyncio.open_connection("127.0.0.1", redis_proxy.port)
    assert await resp(reader, writer, "PING") == b"+PONG\r\n"
    writer.close()


async def test_refuse_resets_open_and_new_connections(redis_proxy: Proxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", redis_proxy.port)
    assert await resp(reader, writer, "PING") == b"+PONG\r\n"
    redis_proxy.refuse()
    with pytest.raises(ConnectionResetError):
        await reader.read(1)
    reader, writer = await asyncio.open_connection("127.0.0.1", redis_proxy.port)
    with pytest.raises(ConnectionResetError):
        await resp(reader, writer, "PING")
    redis_proxy.heal()
    reader, writer = await asyncio.open_connection("127.0.0.1", redis_proxy.port)
    assert await resp(reader, writer, "PING") == b"+PONG\r\n"
    writer.close()


async def test_dropped_reply_after_the_command_ran(
    redis_proxy: Proxy, ns: str, redis_client: Redis
) -> None:
    client = Redis.from_url(redis_proxy.url, retry=Retry(NoBackoff(), 0))
    try:
        assert await client.incr(f"{ns}:n") == 1
        redis_proxy.drop_replies(1.0)
        with pytest.raises(RedisConnectionError):
            await client.incr(f"{ns}:n")
        assert redis_proxy.stats.dropped_replies == 1
        # The command ran: Redis has the increment the client never heard of.
        assert await redis_client.get(f"{ns}:n") == b"2"
        redis_proxy.drop_replies(0.0)
        assert await client.incr(f"{ns}:n") == 3  # and the client reconnects
    finally:
        await client.aclose()


async def test_drops_about_the_fraction_asked(redis_proxy: Proxy, ns: str) -> None:
    redis_proxy.drop_replies(0.1)
    lost = 0
    for _ in range(300):
        reader, writer = await asyncio.open_connection("127.0.0.1", redis_proxy.port)
        try:
            reply = await resp(reader, writer, "INCR", f"{ns}:n")
        except ConnectionError:
            reply = b""
        lost += reply == b""
        writer.close()
    assert lost == redis_proxy.stats.dropped_replies
    assert 10 <= lost <= 60  # seeded: the same 300 draws every run
