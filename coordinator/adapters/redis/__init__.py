"""Redis adapters: the saga store (one Lua script per transition), the
participants' idempotency store, and a clock that follows Redis ``TIME``."""

from coordinator.adapters.redis._store import RedisSagaStore

__all__ = ["RedisSagaStore"]
