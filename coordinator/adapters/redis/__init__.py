"""Redis adapters: the saga store (one Lua script per transition), the
participants' reply store, and a clock that follows Redis ``TIME``."""

from coordinator.adapters.redis._extras import RedisClock, RedisIdempotencyStore, connect_redis
from coordinator.adapters.redis._store import RedisSagaStore

__all__ = ["RedisClock", "RedisIdempotencyStore", "RedisSagaStore", "connect_redis"]
