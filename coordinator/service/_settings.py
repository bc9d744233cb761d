"""Settings, read from the environment (``SAGA_*``) at the edge only.

Everything below the command line receives a frozen :class:`Settings`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from contracts import LIFECYCLE_EVENTS, LifecycleEvent
from coordinator.service._logging import LogFormat, LogLevel

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
        timer_interval: Pause between polls for due timers and stale outbox entries
            (``SAGA_TIMER_INTERVAL``, seconds or an ISO 8601 duration).
        max_message_size: Larger messages are refused (and dead-lettered).
        announce: The lifecycle events the coordinator publishes (``SAGA_ANNOUNCE``,
            comma-separated; empty for none).
        wait_for_servers: How long ``saga run`` and ``saga participant`` wait for
            RabbitMQ and Redis at start (``SAGA_WAIT_FOR_SERVERS``, seconds or an ISO
            8601 duration; ``forever``, the default, waits as long as it takes:
            orchestrators start servers and processes in any order; ``0`` fails at once).
        heartbeat: The AMQP heartbeat proposed to RabbitMQ (``SAGA_HEARTBEAT``). The
            broker closes a connection silent for two to three heartbeats, and only
            then returns its unacknowledged deliveries: 10 s gives a frozen replica's
            work back within 30 s.
        event_loop: ``auto`` runs ``saga run`` and ``saga participant`` on uvloop
            when it is installed, ``asyncio`` on the standard loop.
        log_level: The least severe log records ``saga run`` and ``saga participant``
            write (``SAGA_LOG_LEVEL``: ``DEBUG``, ``INFO``, ``WARNING``, ``ERROR``).
        log_format: ``console`` lines for people, or ``json``, one object per line
            for a log shipper (``SAGA_LOG_FORMAT``).
        breakers_enabled: Circuit breakers on participant services
            (``SAGA_BREAKERS_ENABLED``; ``false`` turns them off, e.g. to measure them).
        breaker_defaults: Thresholds for every service the saga modules do not
            configure (``SAGA_BREAKER_DEFAULTS='{"fail_max": 5, "reset_timeout": 30}'``;
            fields of ``coordinator.Breaker``, ``reset_timeout`` in seconds).
        breakers: Per-service thresholds, over the saga modules' own
            (``SAGA_BREAKERS='{"payments": {"fail_max": 3}}'``).
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
    timer_interval: timedelta = timedelta(seconds=0.2)
    max_message_size: int = 64 * 1024
    announce: Annotated[frozenset[LifecycleEvent], NoDecode] = LIFECYCLE_EVENTS
    wait_for_servers: timedelta | None = None
    heartbeat: timedelta = timedelta(seconds=10)
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"
    log_level: LogLevel = "INFO"
    log_format: LogFormat = "console"
    breakers_enabled: bool = True
    breaker_defaults: dict[str, Any] = {}
    breakers: dict[str, dict[str, Any]] = {}

    @field_validator("breaker_defaults", "breakers")
    @classmethod
    def _breaker_fields(cls, value: dict[str, Any], info: Any) -> dict[str, Any]:
        known = {"fail_max", "reset_timeout", "success_threshold", "probes"}
        tables = value.values() if info.field_name == "breakers" else [value]
        for table in tables:
            unknown = sorted(set(table) - known)
            if unknown:
                raise ValueError(
                    f"no breaker setting {', '.join(unknown)} ({', '.join(sorted(known))})"
                )
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("wait_for_servers", mode="before")
    @classmethod
    def _forever(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("forever", "none", ""):
            return None
        return _seconds(value)

    @field_validator("heartbeat", "timer_interval", mode="before")
    @classmethod
    def _plain_seconds(cls, value: object) -> object:
        return _seconds(value)

    @field_validator("heartbeat")
    @classmethod
    def _whole_seconds(cls, value: timedelta) -> timedelta:
        # AMQP negotiates the heartbeat in whole seconds; 0 would turn it off.
        if value.total_seconds() < 1:
            raise ValueError("must be at least 1 second (0 would disable the heartbeat)")
        return timedelta(seconds=round(value.total_seconds()))

    @field_validator("amqp_url")
    @classmethod
    def _amqp(cls, value: str) -> str:
        return _checked_url(value, ("amqp", "amqps"))

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, value: str) -> str:
        return _checked_url(value, ("redis", "rediss", "unix", "redis+cluster"))

    @field_validator("announce", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(name.strip() for name in value.split(",") if name.strip())
        return value


def _checked_url(url: str, schemes: tuple[str, ...]) -> str:
    """``url`` if its scheme is one of ``schemes`` and its port a number.

    Checked here so that a typo is one clear error at start, not a client
    library retrying an unparsable URL forever (aio-pika does with ``htp://``).
    """
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        raise ValueError(f"the scheme must be {' or '.join(s + '://' for s in schemes)}")
    try:
        parts.port  # noqa: B018 - parsing it is the check
    except ValueError:
        raise ValueError("the port must be a number") from None
    if parts.scheme != "unix" and not parts.hostname and parts.port is None:
        raise ValueError("no host: write e.g. " + schemes[0] + "://localhost")
    return url


def _seconds(value: object) -> object:
    """A plain number from the environment (``"30"``, ``"0.5"``) as seconds:
    pydantic reads a number-like string as an ISO 8601 duration and refuses it."""
    if isinstance(value, str):
        try:
            return timedelta(seconds=float(value))
        except ValueError:
            return value
    return value
