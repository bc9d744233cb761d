"""Runs a service: takes its commands from the transport and publishes the replies.

Per delivery, in this order, because each step makes the next one safe to repeat:

1. decode the command (undecodable or unknown: dead letter, never a crash);
2. under a per-key lock, look up the reply recorded for this very command
   (its message id) or else for its idempotency key and, if there is one, send
   it again for this command without running the handler; otherwise take a
   hold on the key, which fences it from the
   service's other workers and which is renewed while the handler runs, so it
   expires within one ``lease`` when this worker dies. An action whose step's
   compensation has begun is refused (``ALREADY_COMPENSATED``) instead of
   run, and a compensation waits while its action is held: both checks are
   made by the store with taking the key, in one call;
3. run the handler, then record a success or a non-retryable failure for the
   key and publish the reply at once (the record does not wait for the
   publish's confirm, nor the publish for the record); a crash before the
   record landed can lead to a second run, so the handler's own effect must be
   idempotent by ``ctx.idempotency_key``. A retryable failure is recorded for
   this command alone, before it is published: the key's next attempt runs
   the handler, a redelivery of this command gets the same failure again;
4. ack only once both are done; if the publish fails the delivery is requeued
   and the recorded reply answers the redelivery.

A store outage at any of these points holds the delivery and retries the same
call (see ``_outages``) rather than requeue it. The holds on keys are in
``_holds``, the shape of the replies in ``_replies``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from datetime import timedelta
from types import TracebackType
from typing import final

import msgspec

from contracts import DEFAULT_CODEC, Codec, Command, ContractError, Reply, TaskFailed, routes
from coordinator.adapters.memory import SystemClock
from coordinator.ports import (
    Clock,
    Delivery,
    IdempotencyStore,
    RecordedReply,
    Subscription,
    Transport,
    Turn,
)
from coordinator.telemetry import NO_METERS, ParticipantMetrics, SagaScope, ServiceTracer
from participants._errors import Failure, ServiceDefinitionError
from participants._holds import KeyHolds, KeyLocks
from participants._outages import OutageRetries, Stopping
from participants._replies import (
    INVALID_COMMAND,
    ReplyMaker,
    Unanswerable,
    record_of,
    recorded_for_the_key,
    result_of,
    trace_headers,
)
from participants._service import Context, Registration, Service

__all__ = ["ParticipantWorker"]

_log = logging.getLogger("participants")


@final
class ParticipantWorker:
    """Consumes a service's commands and answers each with one reply.

    The queue ``{service}.commands`` is bound to the ``commands`` exchange by
    ``{service}.*``; replies go to the ``events`` exchange with the routing key
    ``{saga_name}.TaskCompleted`` or ``{saga_name}.TaskFailed`` and the id
    ``{command message_id}:reply``, so a reply sent twice is recognised.

    Example:
        worker = ParticipantWorker(inventory, transport=transport, idempotency=store)
        async with worker:
            ...  # commands are handled until the block exits
    """

    def __init__(
        self,
        service: Service,
        *,
        transport: Transport,
        idempotency: IdempotencyStore,
        codec: Codec = DEFAULT_CODEC,
        clock: Clock | None = None,
        prefetch: int = 16,
        lease: timedelta = timedelta(seconds=5),
        tracer: ServiceTracer | None = None,
        metrics: ParticipantMetrics | None = None,
    ) -> None:
        """Create a worker; `start` begins consuming.

        Args:
            service: The service whose commands to handle.
            transport: Where commands come from and replies go.
            idempotency: Where replies are recorded by idempotency key; share
                it between the replicas of a service.
            codec: Decodes commands and encodes replies.
            clock: Stamps the replies' ``sent_at``; the system's UTC clock by default.
            prefetch: Commands handled at once.
            lease: How long a hold on an idempotency key lasts unless renewed;
                it is renewed every third of it while the handler runs. If the
                worker dies, another takes the command over once it expires.
                Raise it if handlers block the event loop for longer.
            tracer: Makes a span for each command handled and each reply sent,
                in the saga's trace (none by default).
            metrics: Where to count commands, handler durations and dead letters.
        """
        self._service = service
        self._transport = transport
        # The broker-validated sender of every reply: the user the connection logged in
        # as (a coordinator that checks senders refuses replies without it).
        self._user_id = transport.user or None
        self._codec = codec
        self._prefetch = prefetch
        self._subscription: Subscription | None = None
        clock = clock or SystemClock()
        self._outages = OutageRetries(clock)
        self._locks = KeyLocks()
        self._holds = KeyHolds(idempotency, self._outages, lease=lease)
        self._replies = ReplyMaker(clock)
        self._tracer = tracer
        self._meters = NO_METERS if metrics is None else metrics.service(service.name)

    @property
    def queue(self) -> str:
        """The queue it consumes: ``{service}.commands``."""
        return routes.commands_queue(self._service.name)

    async def start(self) -> None:
        """Subscribe to the service's queue.

        Raises:
            ServiceDefinitionError: If the service handles no command.
            RuntimeError: If the worker is already running.
        """
        if self._subscription is not None:
            raise RuntimeError(f"the worker of {self._service.name!r} is already running")
        if not self._service.commands:
            raise ServiceDefinitionError(
                f"service {self._service.name!r} handles no command; register one with "
                f"@service.handles(SomeCommand) before starting its worker"
            )
        self._outages.start()
        self._subscription = await self._transport.subscribe(
            self.queue,
            "commands",
            routes.commands_binding(self._service.name),
            self.handle,
            prefetch=self._prefetch,
        )

    async def stop(self) -> None:
        """Stop taking commands and wait for those in flight. Does nothing if not running.

        A command held through a store outage, or waiting for another worker's
        hold, is given back to the broker at once.
        """
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            self._outages.stop()
            await subscription.stop()

    async def __aenter__(self) -> ParticipantWorker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def handle(self, delivery: Delivery) -> None:
        """Handle one delivery and settle it; the transport calls this for each command.

        It never raises for a bad message: what cannot be handled is
        dead-lettered with a reason. A store outage holds the delivery until
        the store is back; only a stop gives it back to the broker.
        """
        self._meters.consumed()
        try:
            command = self._codec.decode_command(delivery.body)
        except ContractError as err:
            await self._dead_letter(delivery, err.reason, str(err))
            return
        registration = self._service.handler_for(command.command)
        if registration is None or command.service != self._service.name:
            await self._dead_letter(delivery, "unknown_command", self._unknown(command))
            return
        with SagaScope(command.saga_id, command.step):
            if self._tracer is None:
                async with self._locks.hold(command.idempotency_key):
                    await self._answer(delivery, command, registration)
                return
            with self._tracer.processing(
                self.queue, delivery.message_id, delivery.headers, command
            ):
                async with self._locks.hold(command.idempotency_key):
                    await self._answer(delivery, command, registration)

    async def _answer(
        self, delivery: Delivery, command: Command, registration: Registration
    ) -> None:
        try:
            turn = await self._holds.wait_for_turn(command.idempotency_key, command.message_id)
            match turn:
                case Turn.TAKEN:
                    await self._run_and_reply(delivery, command, registration)
                case Turn.COMPENSATED:
                    self._meters.answered(command.command, "refused")
                    await self._send(delivery, command, self._replies.refused(command))
                case RecordedReply(body=recorded):
                    self._meters.answered(command.command, "replayed")
                    await self._send(delivery, command, self._replies.recorded(command, recorded))
        except Unanswerable as exc:
            # Neither a success we can report nor a failure (it may have
            # applied): no reply, so the coordinator's timeout treats the step
            # as unknown and compensates it.
            _log.error("cannot reply to %s: %s", command.message_id, exc)
            await self._dead_letter(delivery, "invalid_result", str(exc))
            return
        except Stopping:
            _log.info("stopping: %s goes back to the queue", command.message_id)
            await delivery.requeue()
            return
        except Exception:
            _log.exception("answering %s failed; requeueing it", command.message_id)
            await delivery.requeue()
            return
        await delivery.ack()

    async def _dead_letter(self, delivery: Delivery, reason: str, detail: str) -> None:
        self._meters.dead_lettered(reason)
        await delivery.dead_letter(reason, detail)

    async def _send(self, delivery: Delivery, command: Command, reply: Reply) -> None:
        """Publish a reply given without running the handler (recorded or refused)."""
        await self._publish_reply(delivery, command, reply, self._codec.encode(reply))

    async def _run_and_reply(
        self, delivery: Delivery, command: Command, registration: Registration
    ) -> None:
        """Run the handler while holding its key, then record and publish its reply.

        The record of a reply for the key and its publish go out together,
        neither waiting for the other's round trip; a reply recorded for this
        command alone is recorded first. Both are done before the delivery is
        settled: a requeued command finds its reply recorded. The hold is
        renewed until the record is done.
        """
        key = command.idempotency_key
        recording_it = f"recording the reply to {command.message_id}"
        renewal = self._holds.keep(key)
        try:
            started = time.perf_counter()
            reply = await self._execute(registration, command)
            self._meters.handled(command.command, reply, time.perf_counter() - started)
            body = self._encode_reply(reply)
        except BaseException:
            # Nothing can be sent (the result cannot be, or the task is
            # cancelled): give the key back with nothing recorded. A stop while
            # the store is away requeues the command instead.
            await self._holds.give_back(key, None, renewal, what=recording_it)
            raise
        if not recorded_for_the_key(reply):
            # Recorded for this command before it is published: were this process
            # to die in between, the redelivered command must not run the handler
            # again, which might now apply and answer this command a second time,
            # differently (a success nobody compensates once the saga turned back).
            await self._holds.give_back(
                key, record_of(reply), renewal, what=recording_it, command=command.message_id
            )
            await self._publish_reply(delivery, command, reply, body)
            return
        # The effect may be applied: never run the handler again for a failed
        # record, keep trying to record it (Redis restarting).
        recording = asyncio.ensure_future(
            self._holds.give_back(key, record_of(reply), renewal, what=recording_it)
        )
        # Recorded or not yet, publishing is safe to repeat.
        publish_failure = await _failure_of(self._publish_reply(delivery, command, reply, body))
        record_failure = await _failure_of(recording)
        if isinstance(record_failure, Stopping) and publish_failure is None:
            # The coordinator has the reply: acking spares a second run of the
            # handler, which a redelivery would cause.
            _log.warning(
                "stopping with the reply to %s published but not recorded", command.message_id
            )
        elif record_failure is not None:
            raise record_failure
        elif publish_failure is not None:
            raise publish_failure

    async def _publish_reply(
        self, delivery: Delivery, command: Command, reply: Reply, body: bytes
    ) -> None:
        # Holding the delivery through a broker reconnect spares its delivery limit.
        await self._outages.publish(
            f"publishing the reply to {command.message_id}",
            lambda: self._publish(delivery, command, reply, body),
        )

    async def _publish(
        self, delivery: Delivery, command: Command, reply: Reply, body: bytes
    ) -> None:
        key = routes.reply_key(command.service, command.saga_name, type(reply).__name__)
        self._meters.sent(key)
        if self._tracer is None:
            # Not tracing here: the reply carries on the command's context.
            await self._transport.publish(
                "events",
                key,
                body,
                message_id=reply.message_id,
                headers=trace_headers(delivery.headers),
                user_id=self._user_id,
            )
            return
        failed = reply.error_type if isinstance(reply, TaskFailed) else None
        with self._tracer.replying(key, reply.message_id, command.saga_id, failed) as headers:
            await self._transport.publish(
                "events",
                key,
                body,
                message_id=reply.message_id,
                headers=headers,
                user_id=self._user_id,
            )

    async def _execute(self, registration: Registration, command: Command) -> Reply:
        try:
            payload = msgspec.convert(command.payload, registration.command_type)
        except msgspec.ValidationError as exc:
            # Nothing ran. Recorded for this command alone although not retryable:
            # a fixed deployment should not refuse a later one.
            return self._replies.failed(
                command,
                INVALID_COMMAND,
                f"payload does not match {registration.name}: {exc}",
                retryable=False,
            )
        try:
            result = await registration.handler(payload, Context.from_command(command))
        except Failure as exc:
            _log.info("%s refused %s: %r", registration.name, command.message_id, exc)
            return self._replies.failed(
                command, exc.error_type, exc.message, retryable=exc.retryable
            )
        except Exception as exc:
            _log.warning("%s failed on %s", registration.name, command.message_id, exc_info=True)
            return self._replies.failed(
                command, type(exc).__name__, str(exc) or repr(exc), retryable=True
            )
        return self._replies.completed(command, result_of(result))

    def _encode_reply(self, reply: Reply) -> bytes:
        try:
            return self._codec.encode(reply)
        except ContractError as err:
            raise Unanswerable(f"the reply cannot be encoded: {err}") from err

    def _unknown(self, command: Command) -> str:
        if command.service != self._service.name:
            return (
                f"command {command.command!r} is for service {command.service!r}, "
                f"not {self._service.name!r}"
            )
        known = ", ".join(self._service.commands)
        return (
            f"service {self._service.name!r} has no handler for {command.command!r}; "
            f"it handles: {known}"
        )


async def _failure_of(done: Awaitable[None]) -> BaseException | None:
    """What ``done`` raised, if anything, once it is done: the caller weighs the
    failures of two calls that ran together, rather than nest their handlers."""
    try:
        await done
    except BaseException as exc:
        return exc
    return None
