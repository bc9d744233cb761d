"""How a worker rides out an outage of its reply store or of the broker.

A store outage holds the delivery: the same call is tried again on the one
outage backoff (``coordinator.backoff``: 50 ms doubling to 2 s, with jitter) on
the worker's clock for as long as the worker runs. Returning the command to the
broker instead would spend its delivery limit on the outage and dead-letter a
command that nothing was wrong with; the coordinator's runtime holds its own
deliveries the same way. The hold ends only when the worker stops, and then the
delivery is given back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Final, TypeVar, final

from tenacity import RetryCallState

from coordinator._errors import StoreUnavailableError, UnroutableError
from coordinator.backoff import retry_through_outage
from coordinator.ports import Clock

__all__ = ["OutageRetries", "Stopping"]

_log = logging.getLogger("participants")

T = TypeVar("T")

# Replies are published with the broker's own reconnection under them; after
# this much waiting the delivery is requeued (the reply is recorded by then,
# so the redelivery answers from the record).
_PUBLISH_PATIENCE: Final = timedelta(seconds=120)
# Warn once, then every this many retries: an outage of minutes logs a line a minute.
_LOG_EVERY: Final = 30


class Stopping(Exception):
    """The worker stops while a delivery waits; it is given back to the broker."""


@final
class OutageRetries:
    """The retries of one worker through outages, stopped all at once by ``stop``."""

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

    async def pause(self, delay: timedelta) -> None:
        """Sleep on the worker's clock; wake at once when the worker stops.

        Raises:
            Stopping: The worker stops.
        """
        if self.stopping:
            raise Stopping
        sleeping = asyncio.ensure_future(self._clock.sleep(delay))
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
        try:
            return await retry_through_outage(
                call,
                is_outage=_is_store_outage,
                sleep=self.pause,
                stopping=self._stopping.is_set,
                before_sleep=lambda retry: _log_retry(what, retry),
            )
        except StoreUnavailableError as exc:
            raise Stopping from exc

    async def publish(self, what: str, call: Callable[[], Awaitable[None]]) -> None:
        """``call()``, tried again through a broker outage for ``_PUBLISH_PATIENCE``.

        A message no queue is bound to receive fails the same way every time:
        it is not retried.
        """
        await retry_through_outage(
            call,
            is_outage=_is_broker_outage,
            sleep=self.pause,
            # The time slept, not the clock's: a virtual clock must not make it endless.
            patience=_PUBLISH_PATIENCE,
            stopping=self._stopping.is_set,
            before_sleep=lambda retry: _log_retry(what, retry),
        )


def _is_store_outage(exc: Exception) -> bool:
    return isinstance(exc, StoreUnavailableError)


def _is_broker_outage(exc: Exception) -> bool:
    # A message no queue is bound to receive fails the same way every time.
    return not isinstance(exc, UnroutableError)


def _log_retry(what: str, retry: RetryCallState) -> None:
    if retry.attempt_number == 1 or retry.attempt_number % _LOG_EVERY == 0:
        error = retry.outcome.exception() if retry.outcome is not None else None
        _log.warning(
            "%s: %r; holding the delivery and trying again (attempt %d, %.1fs so far)",
            what,
            error,
            retry.attempt_number,
            retry.idle_for,
        )
