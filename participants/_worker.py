"""Runs a service: takes its commands from the transport and publishes the replies.

Per delivery, in this order, because each step makes the next one safe to repeat:

1. decode the command (undecodable or unknown: dead letter, never a crash);
2. under a per-key lock, look up the reply recorded for its idempotency key
   and, if there is one, send it again for this command without running the
   handler; otherwise take a hold on the key, which fences it from the
   service's other workers and which is renewed while the handler runs, so it
   expires within one ``lease`` when this worker dies. An action whose step's
   compensation has begun is refused (``ALREADY_COMPENSATED``) instead of
   run, and a compensation waits while its action is held: both checks are
   made by the store with taking the key, in one call;
3. run the handler, then record a success or a non-retryable failure and
   publish the reply at once (the record does not wait for the publish's
   confirm, nor the publish for the record); a crash before the record landed
   can lead to a second run, so the handler's own effect must be idempotent
   by ``ctx.idempotency_key``;
4. ack only once both are done; if the publish fails the delivery is requeued
   and the recorded reply answers the redelivery.

A store outage at any of these points holds the delivery and retries the same
call (see ``_holding``) rather than requeue it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Final, final

import msgspec

from contracts import (
    DEFAULT_CODEC,
    Codec,
    Command,
    ContractError,
    Reply,
    TaskCompleted,
    TaskFailed,
    routes,
)
from coordinator.ports import (
    COMPENSATED,
    Clock,
    Compensated,
    Delivery,
    IdempotencyStore,
    Subscription,
    Transport,
)
from participants._errors import Failure, ServiceDefinitionError
from participants._holding import Holding, Stopping
from participants._replies import (
    INVALID_COMMAND,
    KeyLocks,
    Unanswerable,
    record_of,
    recorded_decoder,
    result_of,
    trace_headers,
    worth_recording,
)
from participants._service import Context, Registration, Service

__all__ = ["ALREADY_COMPENSATED", "INVALID_COMMAND", "ParticipantWorker"]

_log = logging.getLogger("participants")

# The error type of the refusal of an action whose step's compensation has begun
# (or is recorded): it never runs after its undo. Not retryable; the coordinator
# has stopped waiting for that action, so it records the reply as late.
ALREADY_COMPENSATED: Final = "AlreadyCompensated"
# A failure's text travels in the reply; a bound keeps a huge message (or a
# repr of a huge value) from making the reply itself undeliverable.
_MAX_ERROR_MESSAGE: Final = 2000
_CLAIM_POLL_SECONDS: Final = 0.2


class _UtcClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


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
        """
        self._service = service
        self._transport = transport
        self._idempotency = idempotency
        self._codec = codec
        self._clock: Clock = clock or _UtcClock()
        self._prefetch = prefetch
        self._locks = KeyLocks()
        self._subscription: Subscription | None = None
        self._lease = lease
        self._holder = uuid.uuid4().hex
        self._holding = Holding(self._clock)

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
        self._holding.start()
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
            self._holding.stop()
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
        try:
            command = self._codec.decode_command(delivery.body)
        except ContractError as err:
            await delivery.dead_letter(err.reason, str(err))
            return
        registration = self._service.handler_for(command.command)
        if registration is None or command.service != self._service.name:
            await delivery.dead_letter("unknown_command", self._unknown(command))
            return
        async with self._locks.hold(command.idempotency_key):
            await self._answer(delivery, command, registration)

    async def _answer(
        self, delivery: Delivery, command: Command, registration: Registration
    ) -> None:
        key = command.idempotency_key
        try:
            recorded = await self._wait_for_turn(key)
            if recorded is None:
                await self._run_and_reply(delivery, command, registration)
            else:
                reply: Reply
                if recorded == COMPENSATED:
                    reply = self._refused(command)
                else:
                    reply = self._recorded(recorded, command)
                body = self._codec.encode(reply)
                await self._holding.publish(
                    f"publishing the reply to {command.message_id}",
                    lambda: self._publish(delivery, command, reply, body),
                )
        except Unanswerable as exc:
            # Neither a success we can report nor a failure (it may have
            # applied): no reply, so the coordinator's timeout treats the step
            # as unknown and compensates it.
            _log.error("cannot reply to %s: %s", command.message_id, exc)
            await delivery.dead_letter("invalid_result", str(exc))
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

    def _refused(self, command: Command) -> TaskFailed:
        _log.warning(
            "refused %s: the compensation of step %r of saga %s has begun",
            command.message_id,
            command.step,
            command.saga_id,
        )
        return self._failed(
            command,
            ALREADY_COMPENSATED,
            f"the compensation of step {command.step!r} has begun or is done: "
            f"its action is refused so that it never runs after its undo",
            retryable=False,
        )

    async def _run_and_reply(
        self, delivery: Delivery, command: Command, registration: Registration
    ) -> None:
        """Run the handler while holding its key, then record and publish its reply.

        The record and the publish go out together, and both are done before
        the delivery is settled: a requeued command finds its reply recorded.
        """
        key = command.idempotency_key
        encoded: bytes | None = None
        published = False
        stop_renewing = self._keep_held(key)
        try:
            reply = await self._execute(registration, command)
            encoded = self._encode_reply(reply)
        finally:
            record = record_of(reply) if encoded is not None and worth_recording(reply) else None
            # The effect may be applied: never run the handler again for a failed
            # record, keep trying to record it (Redis restarting).
            recording = asyncio.get_running_loop().create_task(
                self._holding.store(
                    f"recording the reply to {command.message_id}",
                    lambda: self._idempotency.finish(key, self._holder, record),
                )
            )
            recording.add_done_callback(lambda _: stop_renewing())
            try:
                if encoded is not None:
                    # Recorded or not yet, publishing is safe to repeat; holding the
                    # delivery through a broker reconnect spares its delivery limit.
                    body = encoded
                    await self._holding.publish(
                        f"publishing the reply to {command.message_id}",
                        lambda: self._publish(delivery, command, reply, body),
                    )
                    published = True
            finally:
                try:
                    await recording
                except Stopping:
                    if not published:
                        raise
                    # The coordinator has the reply: acking spares a second run of
                    # the handler, which a redelivery would cause.
                    _log.warning(
                        "stopping with the reply to %s published but not recorded",
                        command.message_id,
                    )

    async def _publish(
        self, delivery: Delivery, command: Command, reply: Reply, body: bytes
    ) -> None:
        await self._transport.publish(
            "events",
            routes.reply_key(command.saga_name, type(reply).__name__),
            body,
            message_id=reply.message_id,
            headers=trace_headers(delivery.headers),
        )

    async def _wait_for_turn(self, key: str) -> bytes | Compensated | None:
        """The recorded reply for ``key`` (or ``COMPENSATED``), or None once this
        worker holds the key.

        Another worker (another process) may be running the same key, or, for a
        compensation, its action: then wait for its reply rather than run the
        handler a second time. Its hold expires if it dies, and this worker
        takes over.
        """
        loop = asyncio.get_running_loop()
        lease = self._lease.total_seconds()
        while True:
            asked = loop.time()
            found = await self._begin(key)
            if found is True and loop.time() - asked >= lease:
                # Frozen (or starved) for a lease since asking: the hold may have
                # lapsed and the step's compensation begun meanwhile. Ask again.
                continue
            if isinstance(found, bytes) or found == COMPENSATED:
                return found
            if found:
                return None
            await self._holding.pause(_CLAIM_POLL_SECONDS)

    async def _begin(self, key: str) -> bytes | bool | Compensated:
        return await self._holding.store(
            f"taking the key {key}",
            lambda: self._idempotency.begin(key, self._holder, self._lease),
        )

    def _keep_held(self, key: str) -> Callable[[], None]:
        """Renew the hold on ``key`` every third of the lease until the returned
        function is called. Most handlers finish before the first renewal, and
        then cost a timer, not a task."""
        loop = asyncio.get_running_loop()
        every = self._lease.total_seconds() / 3
        renewing: list[asyncio.Task[None]] = []

        def begin() -> None:
            renewing.append(
                loop.create_task(
                    self._holding.renew(self._idempotency, key, self._holder, self._lease),
                    name=f"hold {key}",
                )
            )

        timer = loop.call_later(every, begin)

        def stop() -> None:
            timer.cancel()
            for task in renewing:
                task.cancel()

        return stop

    async def _execute(self, registration: Registration, command: Command) -> Reply:
        try:
            payload = msgspec.convert(command.payload, registration.command_type)
        except msgspec.ValidationError as exc:
            # Nothing ran. Not recorded although not retryable: the same payload
            # fails the same way, and a fixed deployment should not be refused.
            return self._failed(
                command,
                INVALID_COMMAND,
                f"payload does not match {registration.name}: {exc}",
                retryable=False,
            )
        try:
            result = await registration.handler(payload, Context.from_command(command))
        except Failure as exc:
            _log.info("%s refused %s: %r", registration.name, command.message_id, exc)
            return self._failed(command, exc.error_type, exc.message, retryable=exc.retryable)
        except Exception as exc:
            _log.warning("%s failed on %s", registration.name, command.message_id, exc_info=True)
            return self._failed(command, type(exc).__name__, str(exc) or repr(exc), retryable=True)
        return TaskCompleted(**self._envelope(command), result=result_of(result))

    def _encode_reply(self, reply: Reply) -> bytes:
        try:
            return self._codec.encode(reply)
        except ContractError as err:
            raise Unanswerable(f"the reply cannot be encoded: {err}") from err

    def _failed(
        self, command: Command, error_type: str, message: str, *, retryable: bool
    ) -> TaskFailed:
        if len(message) > _MAX_ERROR_MESSAGE:
            message = message[:_MAX_ERROR_MESSAGE] + "..."
        return TaskFailed(
            **self._envelope(command),
            error_type=error_type,
            error_message=message,
            retryable=retryable,
        )

    def _recorded(self, data: bytes, command: Command) -> Reply:
        """The recorded outcome, as the reply to this command."""
        try:
            recorded = recorded_decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise ContractError(
                f"the idempotency store holds something else than a reply: {exc}",
                reason="schema_mismatch",
            ) from exc
        if recorded.error_type is None:
            return TaskCompleted(**self._envelope(command), result=recorded.result or {})
        return TaskFailed(
            **self._envelope(command),
            error_type=recorded.error_type,
            error_message=recorded.error_message,
            retryable=recorded.retryable,
        )

    def _envelope(self, command: Command) -> dict[str, Any]:
        return {
            "message_id": routes.reply_id(command.message_id),
            "saga_id": command.saga_id,
            "saga_name": command.saga_name,
            "step": command.step,
            "attempt": command.attempt,
            "kind": command.kind,
            "causation_id": command.message_id,
            "sent_at": self._clock.now(),
        }

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
