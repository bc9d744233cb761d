"""Which Redis errors are an outage: the one classification the saga store and
the participants' reply store share.

An outage is worth waiting out: the same call succeeds once the server is back,
has finished loading its data, or the cluster has settled. Anything else (a
wrong password, a script bug, a wrong type) fails the same way every time and
is raised as it is.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from redis.exceptions import (
    AskError,
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    ClusterError,
    MasterDownError,
    ReadOnlyError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from coordinator._errors import StoreUnavailableError

__all__ = ["TRANSIENT", "is_transient", "outage_is_unavailable"]

TRANSIENT: Final = (
    RedisConnectionError,  # refused, reset, closed; BusyLoadingError (LOADING) is one
    RedisTimeoutError,
    BusyLoadingError,
    ReadOnlyError,  # READONLY: a primary demoted during a failover
    TryAgainError,  # TRYAGAIN: a slot migrating under a multi-key command
    ClusterError,  # CLUSTERDOWN, MASTERDOWN, and the cluster client's "TTL exhausted"
    MasterDownError,
    AskError,  # MOVED and ASK still coming after the cluster client's own retries
    SlotNotCoveredError,
    OSError,
    TimeoutError,
)

# Configuration mistakes: waiting does not fix a wrong password.
_PERMANENT: Final = (AuthenticationError, AuthorizationError)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a Redis outage that the same call can outlive."""
    return isinstance(exc, TRANSIENT) and not isinstance(exc, _PERMANENT)


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def outage_is_unavailable(method: F) -> F:
    """Report a Redis outage as ``StoreUnavailableError``, which callers wait out."""

    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return await method(*args, **kwargs)
        except TRANSIENT as exc:
            if not is_transient(exc):
                raise
            raise StoreUnavailableError(f"Redis is unavailable: {exc!r}") from exc

    return call  # type: ignore[return-value]
