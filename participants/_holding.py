"""How a worker rides out an outage of its reply store or of the broker.

A store outage holds the delivery: the same call is tried again with capped
backoff (50 ms doubling to 2 s, with jitter) on the worker's clock for as long
as the worker runs. Returning the command to the broker instead would spend its
delivery limit on the outage and dead-letter a command that nothing was wrong
with; the coordinator's runtime holds its own deliveries the same way. The
hold ends only when the worker stops, and then the delivery is given back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Final, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    retry_if_exception_type,
    wait_exponential,
    wait_random,
)

from coordinator._errors import StoreUnavailableError, UnroutableError
from coordinator.ports import Clock, IdempotencyStore

__all__ = ["Holding"]

_log = logging.getLogger("participants")

T = TypeVar("T")

# Replies are published with the broker's own reconnection under them; after
# this much waiting the delivery is requeued (the reply is recorded by then,
# so the redelivery answers from the record).
_PUBLISH_PATIENCE: Final = 120.0
_BACKOFF: Final = wait_exponential(multiplier=0.05, max=2.0) + wait_random(0, 0.05)
# Warn once, then every this many retries: an outage of minutes logs a line a minute.
_LOG_EVERY: Final = 30


class Stopping(Exception):
    """The worker stops while a delivery waits; it is given back to the broker."""


class Holding:
    """The retries of one worker, stopped all at once by ``stop``."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._stopping = asyncio.Event()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def start(self) -> None:
        self._stopping.clear()

    def stop(self) -> None:
        self._stopping.set()

    async def pause(self, seconds: float) -> None:
        """Sleep on the worker's clock; wake at once when the worker stops."""
        if self.stopping:
            raise Stopping
        sleeping = asyncio.ensure_future(self._clock.sleep(seconds))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait((sleeping, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeping.cancel()
            stopping.cancel()
        if self.stopping:
            raise Stopping

    async def store(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, tried again through a store outage until the worker stops.

        Raises:
            Stopping: The worker stopped while the store was still unavailable.
        """
        # Almost every call succeeds at once: only a failure pays for building
        # the retrying machinery (it is per command, on the hot path); the first
        # retry then follows at once, the later ones with backoff.
        try:
            return await call()
        except StoreUnavailableError:
            if self.stopping:
                raise Stopping from None
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(StoreUnavailableError),
            wait=_BACKOFF,
            stop=lambda _: self.stopping,
            sleep=self.pause,
            before_sleep=lambda state: _log_retry(what, state),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await call()
        except StoreUnavailableError as exc:
            raise Stopping from exc
        raise AssertionError("unreachable: tenacity returns or raises")

    async def publish(self, what: str, call: Callable[[], Awaitable[None]]) -> None:
        """``call()``, tried again through a broker outage for ``_PUBLISH_PATIENCE``.

        A message no queue is bound to receive fails the same way every time:
        it is not retried.
        """
        try:
            return await call()
        except UnroutableError:
            raise
        except Exception:
            if self.stopping:
                raise
        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda exc: not isinstance(exc, UnroutableError)),
            wait=_BACKOFF,
            # The time slept, not the clock's: a virtual clock must not make it endless.
            stop=lambda state: self.stopping or state.idle_for >= _PUBLISH_PATIENCE,
            sleep=self.pause,
            before_sleep=lambda state: _log_retry(what, state),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await call()

    async def renew(self, store: IdempotencyStore, key: str, holder: str, lease: timedelta) -> None:
        """Renew the hold on ``key`` every third of ``lease`` until cancelled.

        Through a store outage renewals are tried more often; once the outage
        has lasted a lease the hold may have lapsed and another worker may run
        the command as well, which is said once. That is safe for the record:
        ``finish`` records the reply either way and releases only its own hold.
        Renewals use the event loop's time: the lease runs in real time in Redis.
        """
        loop = asyncio.get_running_loop()
        every = lease.total_seconds() / 3
        renewed = loop.time()
        said = False
        while True:
            try:
                held = await store.begin(key, holder, lease)
            except StoreUnavailableError:
                down = loop.time() - renewed
                if down >= lease.total_seconds() and not said:
                    said = True
                    _log.error(
                        "the hold on %s may have lapsed: the store has been unavailable for "
                        "%.1fs, longer than the lease; another worker may run it too",
                        key,
                        down,
                    )
                await asyncio.sleep(min(every, 0.5))
                continue
            if held is not True:
                _log.warning("lost the hold on %s: another worker may run it too", key)
                return
            renewed, said = loop.time(), False
            await asyncio.sleep(every)


def _log_retry(what: str, state: RetryCallState) -> None:
    if state.attempt_number == 1 or state.attempt_number % _LOG_EVERY == 0:
        error = state.outcome.exception() if state.outcome is not None else None
        _log.warning(
            "%s: %r; holding the delivery and trying again (attempt %d, %.1fs so far)",
            what,
            error,
            state.attempt_number,
            state.idle_for,
        )
