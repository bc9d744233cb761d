"""Settings, read from the environment (``SAGA_*``) at the edge only.

Everything below the command line receives a frozen :class:`Settings`.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec
from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from contracts import LIFECYCLE_EVENTS, LifecycleEvent
from coordinator._sealing import Keyring
from coordinator.service._auth import TokenEntry
from coordinator.service._logging import LogFormat, LogLevel
from coordinator.telemetry import TraceMode

__all__ = ["Settings", "http_address"]

_PER_SERVER_TLS = tuple(
    f"{server}_tls_{part}_file" for server in ("amqp", "redis") for part in ("ca", "cert", "key")
)


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
            for a log shipper (``SAGA_LOG_FORMAT``); ``auto``, the default, writes
            JSON unless stderr is a terminal.
        trace_mode: ``continuous`` (one trace per saga, the default) or ``linked``
            (each input of a saga starts a trace linked to the saga's first: for
            sagas that run for days) (``SAGA_TRACE_MODE``). Where the traces go is
            set by the standard ``OTEL_*`` variables; without them nothing is traced.
        breakers_enabled: Circuit breakers on participant services
            (``SAGA_BREAKERS_ENABLED``; ``false`` turns them off, e.g. to measure them).
        breaker_defaults: Thresholds for every service the saga modules do not
            configure (``SAGA_BREAKER_DEFAULTS='{"fail_max": 5, "reset_timeout": 30}'``;
            fields of ``coordinator.Breaker``, ``reset_timeout`` in seconds).
        breakers: Per-service thresholds, over the saga modules' own
            (``SAGA_BREAKERS='{"payments": {"fail_max": 3}}'``).
        http: Where ``/metrics``, ``/livez`` and ``/readyz`` are served (``SAGA_HTTP``,
            ``HOST:PORT``, port 0 for any free one, or ``off``). None: the command's
            default (``saga run`` 127.0.0.1:9464, ``saga participant`` 127.0.0.1:9465);
            a process started from code serves nothing unless told.
        metrics_interval: How often the counts that live in Redis (active and parked
            sagas, the outbox) are read for the metrics (``SAGA_METRICS_INTERVAL``).
        api_tokens: Who may use the REST API and the dashboard (``SAGA_API_TOKENS``, a
            JSON list of ``{"name", "role", "sha256"}``, plus ``"payloads": true`` for
            a token that may read sensitive saga data in clear; ``saga token`` makes an entry).
            Empty: the HTTP server binds to loopback only.
        session_secret: Encrypts the dashboard's session cookie (``SAGA_SESSION_SECRET``);
            unset: a key random per process.
        data_keys: The keys sensitive saga data is sealed with (``SAGA_DATA_KEYS``:
            ``KID:BASE64KEY`` entries, comma-separated, 32 random bytes each; the first
            seals, every one opens: rotate by putting a new key first).
        data_keys_file: A file holding the same, one entry per line
            (``SAGA_DATA_KEYS_FILE``, e.g. a mounted secret); not with ``data_keys``.
        trace_url: The tracing UI's page of a trace, ``{trace_id}`` in it
            (``SAGA_TRACE_URL``, e.g. ``http://jaeger:16686/trace/{trace_id}``): the
            dashboard links each saga to its trace; empty, no link.
        signing_keys: Sign every message and verify every delivery with HMAC-SHA256
            (``SAGA_SIGNING_KEYS``): a JSON object ``{"keys": {"payments:2026-12":
            "<secret>"}, "active": [...], "accepted": [...]}`` or the path of a
            directory of key files (README, "Signed messages"); empty, unsigned.
        tls_ca_file: The CA certificates (PEM) that sign the servers' certificates, for
            ``amqps://`` and ``rediss://`` (``SAGA_TLS_CA_FILE``); unset: the system's.
        tls_cert_file: The client certificate (PEM) shown to the servers that ask for
            one (``SAGA_TLS_CERT_FILE``); with ``tls_key_file``, its private key.
        amqp_tls_ca_file: ``tls_ca_file`` for RabbitMQ only (``SAGA_AMQP_TLS_CA_FILE``);
            ``amqp_tls_cert_file`` and ``amqp_tls_key_file`` likewise, e.g. a
            certificate whose name is the RabbitMQ user.
        redis_tls_ca_file: ``tls_ca_file`` for Redis only (``SAGA_REDIS_TLS_CA_FILE``);
            ``redis_tls_cert_file`` and ``redis_tls_key_file`` likewise.
        tls_insecure: Allow TLS without verification (``SAGA_TLS_INSECURE=1``: a
            URL's ``no_verify_ssl=1``, ``ssl_cert_reqs=none``, ``ssl_check_hostname=false``);
            without it the processes refuse to start with such a URL.
        sender_check: Whether the coordinator checks who sent each message by its
            broker-validated ``user_id`` (``SAGA_SENDER_CHECK``): ``on``, ``off``, or
            ``auto`` (the default): on unless the coordinator logs in to RabbitMQ as
            ``guest``, i.e. on once users are configured.
        service_users: A service's RabbitMQ user when it is not ``{namespace}.{service}``
            (``SAGA_SERVICE_USERS='{"payments": "pay-svc"}'``).
        control_users: The users whose start, signal, cancel, retry, pause and resume
            messages are taken (``SAGA_CONTROL_USERS``, comma-separated); empty, the
            default: ``{namespace}.coordinator`` and ``{namespace}.operator``.
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
    log_format: LogFormat = "auto"
    trace_mode: TraceMode = "continuous"
    breakers_enabled: bool = True
    breaker_defaults: dict[str, Any] = {}
    breakers: dict[str, dict[str, Any]] = {}
    http: str | None = None
    metrics_interval: timedelta = timedelta(seconds=5)
    api_tokens: list[dict[str, Any]] = []
    session_secret: str | None = None
    trace_url: str = ""
    signing_keys: SecretStr = SecretStr("")  # secrets: kept out of reprs and errors
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    amqp_tls_ca_file: Path | None = None
    amqp_tls_cert_file: Path | None = None
    amqp_tls_key_file: Path | None = None
    redis_tls_ca_file: Path | None = None
    redis_tls_cert_file: Path | None = None
    redis_tls_key_file: Path | None = None
    tls_insecure: bool = False
    data_keys: SecretStr = SecretStr("")  # never in a repr or a log line
    data_keys_file: str = ""

    def keyring(self) -> Keyring | None:
        """The keyring of ``data_keys`` / ``data_keys_file``; None when neither is set.

        Raises:
            SettingsError: a malformed or short key, or an unreadable file.
        """
        return Keyring.configured(self.data_keys.get_secret_value(), self.data_keys_file)

    sender_check: Literal["auto", "on", "off"] = "auto"
    service_users: dict[str, str] = {}
    control_users: Annotated[tuple[str, ...], NoDecode] = ()

    @property
    def checks_senders(self) -> bool:
        """``sender_check`` resolved: ``auto`` is on unless RabbitMQ's user is ``guest``."""
        if self.sender_check == "auto":
            return _amqp_user(self.amqp_url) != "guest"
        return self.sender_check == "on"

    @field_validator("control_users", mode="before")
    @classmethod
    def _control_users(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value

    @property
    def http_address(self) -> tuple[str, int] | None:
        """``http`` as ``(host, port)``; None when off or unset."""
        return None if self.http in (None, "off") else http_address(self.http)

    @field_validator("http", mode="before")
    @classmethod
    def _http(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() == "off":
            return "off"
        if isinstance(value, str):
            host, port = http_address(value)
            return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return value

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

    @field_validator("api_tokens")
    @classmethod
    def _tokens(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for entry in value:
            try:
                checked = msgspec.convert(entry, TokenEntry)
                bytes.fromhex(checked.sha256)
            except (msgspec.ValidationError, ValueError) as exc:
                raise ValueError(
                    f'each entry is {{"name", "role" (viewer, operator, admin), "sha256"'
                    f'[, "payloads": true]}}: {exc}'
                ) from None
            if len(checked.sha256) != 64:
                raise ValueError(f"{checked.name}: sha256 is 64 hex digits")
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

    @field_validator("heartbeat", "timer_interval", "metrics_interval", mode="before")
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

    @field_validator("tls_ca_file", "tls_cert_file", "tls_key_file", *_PER_SERVER_TLS)
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError("no such file: give the path of a PEM file")
        return value

    @field_validator("announce", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(name.strip() for name in value.split(",") if name.strip())
        return value


def _amqp_user(url: str) -> str:
    # As aio-pika reads it: no user in the URL is guest; a certificate login is not.
    parts = urlsplit(url)
    if "auth=external" in parts.query.lower():
        return ""
    return parts.username or "guest"


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


def http_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as ``(host, port)``.

    Raises:
        ValueError: not a host and a port from 0 to 65535.
    """
    host, sep, port = text.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError("expected HOST:PORT (e.g. 127.0.0.1:9464; port 0: any free one) or off")
    return host, int(port)


def _seconds(value: object) -> object:
    """A plain number from the environment (``"30"``, ``"0.5"``) as seconds:
    pydantic reads a number-like string as an ISO 8601 duration and refuses it."""
    if isinstance(value, str):
        try:
            return timedelta(seconds=float(value))
        except ValueError:
            return value
    return value
