"""The one backoff for riding out an outage of Redis or RabbitMQ.

The coordinator's runtime and the participants' workers hold a delivery
through an outage and try the same call again, rather than give the delivery
back to the broker, where each failure would spend one of its deliveries. Both
retry with :func:`retry_through_outage`, on :data:`OUTAGE_BACKOFF`.

The schedule is tenacity's, and counts from the first failure: 50 ms, doubling
up to 2 s, plus up to 50 ms of jitter so that the many deliveries held through
one outage do not all retry in the same instant. The delays are slept with the
caller's ``sleep``, the injected ``Clock``'s (or a wrapper of it), so a virtual
clock in a test takes no real time. A ``patience`` is counted on that clock
too: it is the sum of the delays slept, not tenacity's ``stop_after_delay``,
which reads the process's monotonic time.

Example:
    await retry_through_outage(
        lambda: store.load(saga_id),
        is_outage=lambda exc: isinstance(exc, StoreUnavailableError),
        sleep=clock.sleep,
        patience=timedelta(minutes=5),
    )
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Final, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_exponential,
    wait_random,
)
from tenacity.stop import stop_base

__all__ = ["OUTAGE_BACKOFF", "retry_through_outage"]

T = TypeVar("T")

OUTAGE_BACKOFF: Final = wait_exponential(multiplier=0.05, max=2.0) + wait_random(0, 0.05)
"""The delay before each retry: 50 ms doubling to 2 s, plus up to 50 ms of jitter."""


async def retry_through_outage(
    call: Callable[[], Awaitable[T]],
    *,
    is_outage: Callable[[Exception], bool],
    sleep: Callable[[timedelta], Awaitable[None]],
    patience: timedelta | None = None,
    stopping: Callable[[], bool] | None = None,
    before_sleep: Callable[[RetryCallState], None] | None = None,
) -> T:
    """``call()``, tried again on :data:`OUTAGE_BACKOFF` while it fails with an outage.

    Almost every call succeeds at once, and the callers are on a per-message
    hot path: the first call is made here, and only a failure pays for
    building tenacity's retrying object.

    Args:
        call: Makes the call; called once per attempt.
        is_outage: Whether a failure is an outage worth waiting out; any
            other exception (and any ``BaseException``, such as a
            cancellation) is raised at once.
        sleep: Sleeps between attempts: the injected clock's ``sleep``, or
            a wrapper of it that wakes early (and raises) on a stop.
        patience: Give up once the delays slept add up to this much (counted
            on ``sleep``'s clock). None: no limit.
        stopping: Give up as soon as this says so, checked after each failure.
        before_sleep: Called before each delay, to log the retry.

    Returns:
        What ``call()`` returned on the first attempt that succeeded.

    Raises:
        Exception: The last failure, when it is not an outage or the caller
            gives up (``patience`` spent, or ``stopping``).
    """
    try:
        return await call()
    except Exception as exc:
        if not is_outage(exc):
            raise
        first_failure: Exception | None = exc
    retrying = AsyncRetrying(
        retry=retry_if_exception(lambda exc: isinstance(exc, Exception) and is_outage(exc)),
        wait=OUTAGE_BACKOFF,
        stop=_GiveUp(patience, stopping),
        # tenacity sleeps in float seconds; the clock's sleep takes a timedelta.
        sleep=lambda seconds: sleep(timedelta(seconds=seconds)),
        before_sleep=before_sleep,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            if first_failure is not None:
                # Tenacity's first attempt is the call made above: its failure
                # starts the schedule, so the first retry waits 50 ms as well.
                failure, first_failure = first_failure, None
                raise failure
            return await call()
    raise AssertionError("unreachable: tenacity returns or raises")


class _GiveUp(stop_base):
    """Tenacity's stop: the patience is spent, or the caller is stopping."""

    def __init__(self, patience: timedelta | None, stopping: Callable[[], bool] | None) -> None:
        self._patience = None if patience is None else patience.total_seconds()
        self._stopping = stopping

    def __call__(self, retry_state: RetryCallState) -> bool:
        # ``idle_for`` sums the delays tenacity had slept with ``sleep``: time on
        # the caller's clock, whereas its ``seconds_since_start`` is monotonic time.
        if self._patience is not None and retry_state.idle_for >= self._patience:
            return True
        return self._stopping is not None and self._stopping()
