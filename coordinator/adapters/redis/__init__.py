"""Redis adapters: the saga store (one Lua script per transition), the
participants' reply store, and a clock that follows Redis ``TIME``."""

from contracts._public import show_as_public
from coordinator.adapters.redis._acl import acl_users
from coordinator.adapters.redis._breakers import RedisBreakerStore
from coordinator.adapters.redis._clock import RedisClock
from coordinator.adapters.redis._connect import connect_redis
from coordinator.adapters.redis._idempotency import RedisIdempotencyStore
from coordinator.adapters.redis._store import RedisSagaStore

__all__ = [
    "RedisBreakerStore",
    "RedisClock",
    "RedisIdempotencyStore",
    "RedisSagaStore",
    "acl_users",
    "connect_redis",
]

show_as_public(__name__, globals(), __all__)
