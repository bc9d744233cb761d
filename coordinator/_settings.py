"""Settings, read from the environment (``SAGA_*``) at the edge only.

Everything below the command line receives a frozen :class:`Settings`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from coordinator.core import LIFECYCLE_EVENTS, LifecycleEvent

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Where the coordinator and the participants find their servers, and how they behave.

    Attributes:
        amqp_url: RabbitMQ (``SAGA_AMQP_URL``).
        redis_url: Redis (``SAGA_REDIS_URL``); ``redis+cluster://host:port`` for a cluster.
        namespace: Prefix of every exchange, queue and key (``SAGA_NAMESPACE``), so
            several deployments, or parallel test runs, share one broker and one Redis.
        delivery_limit: Deliveries of a message before it is dead-lettered.
        prefetch: Unacknowledged messages per consumer.
        buckets: Hash slots the sagas are spread over in Redis.
        retention: How long finished sagas (state and history) are kept.
        idempotency_ttl: How long participants remember their replies.
        participant_lease: How long a participant's hold on a command outlives the
            worker that died running it; renewed while the handler runs.
        reconnect_interval: Pause between attempts to reconnect to RabbitMQ.
        timer_interval: Seconds between polls for due timers and stale outbox entries.
        max_message_size: Larger messages are refused (and dead-lettered).
        announce: The lifecycle events the coordinator publishes (``SAGA_ANNOUNCE``,
            comma-separated; empty for none).
        event_loop: ``auto`` runs ``saga run`` and ``saga participant`` on uvloop
            when it is installed, ``asyncio`` on the standard loop.
    """

    model_config = SettingsConfigDict(env_prefix="SAGA_", frozen=True)

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    redis_url: str = "redis://127.0.0.1:6379/0"
    namespace: str = "saga"
    delivery_limit: int = 5
    prefetch: int = 64
    buckets: int = 16
    retention: timedelta = timedelta(days=7)
    idempotency_ttl: timedelta = timedelta(days=7)
    participant_lease: timedelta = timedelta(seconds=5)
    reconnect_interval: timedelta = timedelta(seconds=1)
    timer_interval: float = 0.2
    max_message_size: int = 64 * 1024
    announce: Annotated[frozenset[LifecycleEvent], NoDecode] = LIFECYCLE_EVENTS
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"

    @field_validator("announce", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(name.strip() for name in value.split(",") if name.strip())
        return value
