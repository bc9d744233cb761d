"""The Redis client the product makes: commands packed by hiredis, byte for byte
what redis-py's own packer sends."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import DataError

from coordinator.adapters.redis import connect_redis

ARGS: list[tuple[Any, ...]] = [
    ("SET", "k", "v"),
    ("HSET", "ns:{ns.b3}:s:id", "state", b'{"a":1}', "rev", 7, "status", "running"),
    ("EVALSHA", "a" * 40, 2, "k1", "k2", -1, 0, 1.5, 1733000000000, b"", "", "\u00e9\u6f22"),
    ("CONFIG GET", "maxmemory"),
    ("SET", "big", b"x" * 100_000),
]


def test_the_client_packs_with_hiredis() -> None:
    client = connect_redis("redis://127.0.0.1:6379/0")
    assert isinstance(client, Redis)
    made = client.connection_pool.connection_class
    assert issubclass(made, Connection)
    assert made.pack_command is not Connection.pack_command


def test_a_unix_socket_url_keeps_its_connection_class() -> None:
    client = connect_redis("unix:///tmp/redis.sock")
    assert isinstance(client, Redis)
    made = client.connection_pool.connection_class
    assert issubclass(made, UnixDomainSocketConnection)
    assert made.pack_command is not UnixDomainSocketConnection.pack_command


@pytest.mark.parametrize("args", ARGS, ids=lambda a: str(a[0]))
def test_packed_bytes_are_what_redis_py_sends(args: tuple[Any, ...]) -> None:
    client = connect_redis("redis://127.0.0.1:6379/0")
    assert isinstance(client, Redis)
    fast = client.connection_pool.connection_class()
    plain = Connection()
    assert b"".join(fast.pack_command(*args)) == b"".join(plain.pack_command(*args))


def test_an_argument_redis_cannot_take_is_a_data_error() -> None:
    client = connect_redis("redis://127.0.0.1:6379/0")
    assert isinstance(client, Redis)
    with pytest.raises(DataError):
        client.connection_pool.connection_class().pack_command("SET", "k", None)


async def test_values_round_trip(redis_client: Redis, ns: str) -> None:
    values: dict[str, Any] = {"s": "\u00e9\u6f22", "b": b"\x00\xff", "i": -3, "f": 1.25}
    await redis_client.hset(f"{ns}:h", mapping=values)
    assert await redis_client.hgetall(f"{ns}:h") == {
        b"s": "\u00e9\u6f22".encode(),
        b"b": b"\x00\xff",
        b"i": b"-3",
        b"f": b"1.25",
    }
