"""The events queue: each message decoded, taken through the transitions, settled.

A message that cannot be taken is dead-lettered with the reason (malformed, a
schema it does not fit, an unknown saga or version, an operator's request the
saga refuses); nothing here raises for a bad message. While the store is
unreachable a message is held and retried with backoff, not given back to the
broker, where each failure would spend one of its deliveries.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, final

import msgspec

from contracts import (
    CancelSaga,
    Codec,
    ContractError,
    CoordinatorInbound,
    PauseSaga,
    ResumeSaga,
    RetrySaga,
    Signal,
    StartSaga,
    TaskCompleted,
    TaskFailed,
    routes,
)
from coordinator._errors import (
    SealedDataError,
    StoreUnavailableError,
    UnknownSagaError,
    UnknownVersionError,
)
from coordinator.backoff import retry_through_outage
from coordinator.core import SagaDefinition, SagaState
from coordinator.ports import Clock, Delivery, Refusal
from coordinator.runtime._senders import WRONG_SENDER, SenderCheck, WrongSender
from coordinator.runtime._transition import Guard, Store, Transitions
from coordinator.runtime._translate import dedupe_id, input_for, request_name, what_of
from coordinator.runtime._versions import UNKNOWN_VERSION
from coordinator.telemetry import Telemetry

__all__ = ["Inbox"]

_log = logging.getLogger("coordinator")

EVENTS_QUEUE = routes.EVENTS_QUEUE

StartSagaFn = Callable[..., Awaitable[tuple[SagaState[Any], bool]]]


@final
class Inbox:
    """Takes the coordinator's events queue, one delivery at a time."""

    def __init__(
        self,
        transitions: Transitions,
        *,
        store: Store,
        clock: Clock,
        codec: Codec,
        telemetry: Telemetry,
        store_outage: timedelta,
        start_saga: StartSagaFn,
        senders: SenderCheck | None = None,
    ) -> None:
        self._transitions = transitions
        self._store = store
        self._clock = clock
        self._codec = codec
        self._telemetry = telemetry
        self._store_outage = store_outage
        self._start_saga = start_saga
        self._senders = senders

    async def handle(self, delivery: Delivery) -> None:
        """Handle one message from the events queue, then settle it.

        While the store is unreachable the message is held and retried with
        backoff (up to ``store_outage``), not returned to the broker, where each
        failure would spend one of its deliveries.
        """
        self._telemetry.consumed(EVENTS_QUEUE)
        try:
            message = self._codec.decode_inbound(delivery.body)
        except ContractError as exc:
            await self._dead_letter(delivery, exc.reason, str(exc))
            return
        await retry_through_outage(
            lambda: self._handle(delivery, message),
            is_outage=lambda exc: isinstance(exc, StoreUnavailableError),
            sleep=self._clock.sleep,
            patience=self._store_outage,
            before_sleep=lambda retry: _log.warning(
                "store unavailable; retrying %s in %.2fs",
                delivery.message_id,
                retry.upcoming_sleep,
            ),
        )

    async def _handle(self, delivery: Delivery, message: CoordinatorInbound) -> None:
        try:
            guard = self._guard(delivery, message)
            match message:
                case StartSaga():
                    await self._start_saga(
                        message.saga_name,
                        message.saga_id,
                        message.input,
                        message.message_id,
                        delivery=delivery,
                        by=message.by,
                    )
                case (
                    TaskCompleted()
                    | TaskFailed()
                    | Signal()
                    | CancelSaga()
                    | RetrySaga()
                    | PauseSaga()
                    | ResumeSaga()
                ):
                    decision = await self._transitions.apply(
                        message.saga_id,
                        dedupe_id(message),
                        input_for(message),
                        what=what_of(message),
                        delivery=delivery,
                        guard=guard,
                    )
                    if decision.refused and not isinstance(message, TaskCompleted | TaskFailed):
                        # The refusal is in the history already; the sender finds the
                        # message with the same reason among the dead letters.
                        what = request_name(message)
                        await self._dead_letter(delivery, f"{what}_refused", decision.refused)
                        return
        except WrongSender as exc:
            _log.warning("refused %s: %s", delivery.message_id, exc)
            await self._dead_letter(delivery, WRONG_SENDER, str(exc))
            return
        except UnknownVersionError as exc:  # moved back by a coordinator that has it
            await self._refused(delivery, message, UNKNOWN_VERSION, str(exc))
            return
        except UnknownSagaError as exc:
            await self._refused(delivery, message, "unknown_saga", str(exc))
            return
        except (msgspec.ValidationError, ContractError) as exc:
            await self._refused(delivery, message, "schema_mismatch", str(exc))
            return
        except SealedDataError as exc:
            # The stored saga does not open (altered, or sealed with a key not given
            # here): a redelivery would meet the same bytes. Parked, with the saga,
            # field and key id (never a value), until an operator restores the key.
            await self._dead_letter(delivery, "sealed_data", str(exc))
            return
        await delivery.ack()

    def _guard(self, delivery: Delivery, message: CoordinatorInbound) -> Guard | None:
        """Refuse a control message from the wrong user now; a reply's guard, which
        needs the step's service, runs once the saga's definition is known.

        The routing key is checked whether senders are or not: under a current key the
        message must be what the key says (type, saga; a reply's service is the step's).

        Raises:
            WrongSender: A control message from a user not allowed to control, or a
                message that is not what its routing key says.
        """
        route = routes.events_route(delivery.routing_key)
        if route is not None and not route.legacy:
            # Topic permissions confine a user to a key prefix: the body must not say
            # more than its key (a cancel under a reply's key, another saga's start).
            name = getattr(message, "saga_name", "")
            if route.type != type(message).__name__ or (route.saga_name or name) != name:
                raise WrongSender(
                    f"a {type(message).__name__} of saga {name or '-'!r} under routing key "
                    f"{delivery.routing_key!r}"
                )
        if not isinstance(message, TaskCompleted | TaskFailed):
            if self._senders is not None:
                what = "start" if isinstance(message, StartSaga) else request_name(message)
                self._senders.control(delivery.user_id, what)
            return None
        claimed = route.service if route is not None else ""
        senders = self._senders

        def guard(definition: SagaDefinition[Any]) -> None:
            step = definition.steps.get(message.step)
            service = None if step is None else step.service
            if claimed and service is not None and claimed != service:
                raise WrongSender(
                    f"reply for step {message.step!r} of service {service!r} "
                    f"published as {claimed!r} ({delivery.routing_key})"
                )
            if senders is not None:
                senders.reply(delivery.user_id, service, message.step)

        return guard

    async def _refused(
        self, delivery: Delivery, message: CoordinatorInbound, reason: str, detail: str
    ) -> None:
        if isinstance(message, StartSaga):
            # Kept for the client waiting to hear whether its start was taken.
            refusal = Refusal(reason=reason, detail=detail, sent_at=message.sent_at)
            await self._store.record_refusal(message.saga_id, refusal)
        await self._dead_letter(delivery, reason, detail)

    async def _dead_letter(self, delivery: Delivery, reason: str, detail: str) -> None:
        self._telemetry.dead_lettered(EVENTS_QUEUE, reason)
        await delivery.dead_letter(reason, detail)
