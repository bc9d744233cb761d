"""Waiting for RabbitMQ and Redis at start-up.

Orchestrators start servers and processes in any order, so ``saga run`` and
``saga participant`` wait for each server, saying in one line which one and
where (the URL without its password), and retry with capped backoff (tenacity)
until it answers or the patience (``SAGA_WAIT_FOR_SERVERS``) runs out. A server
that answers but refuses us (a wrong password, a topology mismatch) is not
waited for: that needs a fix, not time; nor is one whose TLS does not match ours
(``_tls.diagnose_tls``).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import ssl
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiormq
import tenacity
from redis.exceptions import AuthenticationError, AuthorizationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from coordinator._errors import SagaError, ServerUnreachableError, SettingsError
from coordinator.service._tls import diagnose_tls

__all__ = ["mask_url", "wait_for_server"]

_log = logging.getLogger("coordinator")

T = TypeVar("T")

# One attempt may hang (a reply lost by a proxy, a half-open connection): it is
# abandoned after this long and counts as a failed one.
ATTEMPT_TIMEOUT = timedelta(seconds=10)
BACKOFF_MAX = 5.0


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _refused_us(exc: BaseException) -> bool:
    """The server answered and said no: waiting will not change that."""
    return isinstance(
        exc,
        aiormq.exceptions.ProbableAuthenticationError
        | AuthenticationError
        | AuthorizationError
        | ResponseError,
    )


def _transient(exc: BaseException) -> bool:
    if _refused_us(exc):
        return False
    return isinstance(
        exc, OSError | RedisConnectionError | RedisTimeoutError | aiormq.exceptions.AMQPError
    )


def reason(exc: BaseException) -> str:
    """A few words on why a connection failed: ``connection refused``, ``timed out``."""
    seen: BaseException | None = exc
    while seen is not None:
        code = getattr(seen, "errno", None)
        if code is None and seen.args and isinstance(seen.args[0], int):
            code = seen.args[0]
        if isinstance(code, int) and code in errno.errorcode:
            return os.strerror(code).lower()
        if isinstance(seen, TimeoutError | RedisTimeoutError):
            return "no answer: timed out"
        seen = seen.__cause__ or seen.__context__
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


async def wait_for_server(
    server: str,
    url: str,
    setting: str,
    attempt: Callable[[], Awaitable[T]],
    *,
    patience: timedelta | None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    attempt_timeout: timedelta = ATTEMPT_TIMEOUT,
    tls: ssl.SSLContext | None = None,
) -> T:
    """Run ``attempt`` (connect, ping) until it succeeds, waiting for ``server``.

    Args:
        server: What to call it in messages: ``RabbitMQ``, ``Redis``.
        url: Where it is; logged without the password.
        setting: The environment variable that points at it, for the error.
        patience: How long to keep trying; ``None`` forever, zero one attempt.
        sleep: The pause between attempts (injected: tests do not wait).
        attempt_timeout: How long one attempt may hang before it counts as failed.
        tls: The TLS context ``attempt`` connects with, to tell a refusal of it
            from a server going away.

    Raises:
        ServerUnreachableError: ``server`` did not answer within ``patience``.
    """
    shown = mask_url(url)

    def waiting(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        pause = state.next_action.sleep if state.next_action else 0.0
        # The attempt count and the time so far make each line a progress report,
        # readable alike on a terminal and in a log shipper's JSON.
        _log.warning(
            "waiting for %s at %s (%s); attempt %d, %.0f s so far; next try in %.1f s",
            server,
            shown,
            reason(exc) if exc else "?",
            state.attempt_number,
            state.seconds_since_start or 0.0,
            pause,
        )

    async def bounded() -> T:
        try:
            async with asyncio.timeout(attempt_timeout.total_seconds()):
                return await attempt()
        except Exception as exc:
            # A TLS mismatch looks like a server that hangs up: say which
            # setting to fix rather than wait for it forever.
            if isinstance(exc, SagaError) or _refused_us(exc):
                raise
            problem = await diagnose_tls(server, url, exc, tls)
            if problem is not None:
                raise SettingsError(problem) from exc
            raise

    stop: tenacity.stop.stop_base = tenacity.stop_never
    if patience is not None:
        stop = (
            tenacity.stop_after_attempt(1)
            if patience <= timedelta(0)
            else tenacity.stop_after_delay(patience.total_seconds())
        )
    retrying = tenacity.AsyncRetrying(
        stop=stop,
        wait=tenacity.wait_exponential(multiplier=0.25, max=BACKOFF_MAX),
        retry=tenacity.retry_if_exception(_transient),
        before_sleep=waiting,
        sleep=sleep,
        reraise=True,
    )
    try:
        return await retrying(bounded)
    except Exception as exc:
        if _transient(exc):
            raise ServerUnreachableError(server, shown, reason(exc), setting) from exc
        if _refused_us(exc):
            raise SagaError(
                f"{server} at {shown} refused the connection ({reason(exc)}); "
                f"check the credentials in {setting}"
            ) from exc
        raise
