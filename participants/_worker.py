"""Runs a service: takes its commands from the transport and publishes the replies.

Per delivery, in this order, because each step makes the next one safe to repeat:

1. decode the command (undecodable or unknown: dead letter, never a crash);
2. under a per-key lock, look up the reply recorded for its idempotency key
   and, if there is one, send it again for this command without running the
   handler; otherwise take a hold on the key, which fences it from the
   service's other workers and which is renewed while the handler runs, so it
   expires within one ``lease`` when this worker dies;
3. run the handler, then record a success or a non-retryable failure and
   publish the reply at once (the record does not wait for the publish's
   confirm, nor the publish for the record); a crash before the record landed
   can lead to a second run, so the handler's own effect must be idempotent
   by ``ctx.idempotency_key``;
4. ack only once both are done; if the publish fails the delivery is requeued
   and the recorded reply answers the redelivery.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Final, final

import msgspec

from contracts import DEFAULT_CODEC, Codec, Command, ContractError, Reply, TaskCompleted, TaskFailed
from coordinator._ports import Clock, Delivery, IdempotencyStore, Subscription, Transport
from participants._errors import Failure, ServiceDefinitionError
from participants._service import Context, Registration, Service

__all__ = ["ParticipantWorker"]

_log = logging.getLogger("participants")

INVALID_COMMAND: Final = "InvalidCommand"
# A failure's text travels in the reply; a bound keeps a huge message (or a
# repr of a huge value) from making the reply itself undeliverable.
_MAX_ERROR_MESSAGE: Final = 2000
_CLAIM_POLL_SECONDS: Final = 0.2
_PERSIST_SECONDS: Final = 120.0
# Forwarded from the command to the reply so the trace continues.
_TRACE_HEADERS: Final = ("traceparent", "tracestate")


class _UtcClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _Recorded(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a reply says, without its envelope: what the idempotency store keeps.

    A whole reply, as earlier versions recorded, decodes into it as well.
    """

    result: dict[str, Any] | None = None
    error_type: str | None = None
    error_message: str = ""
    retryable: bool = False


_recorded_decoder = msgspec.json.Decoder(_Recorded)
_recorded_encoder = msgspec.json.Encoder()


def _record_of(reply: Reply) -> bytes:
    if isinstance(reply, TaskCompleted):
        return _recorded_encoder.encode(_Recorded(result=reply.result))
    return _recorded_encoder.encode(
        _Recorded(
            error_type=reply.error_type,
            error_message=reply.error_message,
            retryable=reply.retryable,
        )
    )


class _Unanswerable(Exception):
    """The handler ran but its result cannot be sent; the outcome stays unknown."""


class _KeyLocks:
    """One asyncio lock per idempotency key in use, dropped when nobody holds or awaits it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[key]

    def __len__(self) -> int:
        return len(self._locks)


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
        self._locks = _KeyLocks()
        self._subscription: Subscription | None = None
        self._lease = lease
        self._holder = uuid.uuid4().hex

    @property
    def queue(self) -> str:
        """The queue it consumes: ``{service}.commands``."""
        return f"{self._service.name}.commands"

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
        self._subscription = await self._transport.subscribe(
            self.queue,
            "commands",
            f"{self._service.name}.*",
            self.handle,
            prefetch=self._prefetch,
        )

    async def stop(self) -> None:
        """Stop taking commands and wait for those in flight. Does nothing if not running."""
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
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
        dead-lettered with a reason, and a transient fault requeues it.
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
            if recorded is not None:
                reply = self._recorded(recorded, command)
                body = self._codec.encode(reply)
                await self._persist(lambda: self._publish(delivery, command, reply, body))
            else:
                await self._run_and_reply(delivery, command, registration)
        except _Unanswerable as exc:
            # Neither a success we can report nor a failure (it may have
            # applied): no reply, so the coordinator's timeout treats the step
            # as unknown and compensates it.
            _log.error("cannot reply to %s: %s", command.message_id, exc)
            await delivery.dead_letter("invalid_result", str(exc))
            return
        except Exception:
            _log.exception("answering %s failed; requeueing it", command.message_id)
            await delivery.requeue()
            return
        await delivery.ack()

    async def _run_and_reply(
        self, delivery: Delivery, command: Command, registration: Registration
    ) -> None:
        """Run the handler while holding its key, then record and publish its reply.

        The record and the publish go out together, and both are done before
        the delivery is settled: a requeued command finds its reply recorded.
        """
        key = command.idempotency_key
        encoded: bytes | None = None
        stop_renewing = self._keep_held(key)
        try:
            reply = await self._execute(registration, command)
            encoded = self._encode_reply(reply)
        finally:
            record = _record_of(reply) if encoded is not None and _worth_recording(reply) else None
            # The effect may be applied: never run the handler again for a failed
            # record, keep trying to record it (Redis restarting).
            recording = asyncio.get_running_loop().create_task(
                self._persist(lambda: self._idempotency.finish(key, self._holder, record))
            )
            recording.add_done_callback(lambda _: stop_renewing())
            try:
                if encoded is not None:
                    # Recorded or not yet, publishing is safe to repeat; holding the
                    # delivery through a broker reconnect spares its delivery limit.
                    await self._persist(lambda: self._publish(delivery, command, reply, encoded))
            finally:
                await recording

    async def _publish(
        self, delivery: Delivery, command: Command, reply: Reply, body: bytes
    ) -> None:
        await self._transport.publish(
            "events",
            f"{command.saga_name}.{type(reply).__name__}",
            body,
            message_id=reply.message_id,
            headers=_trace_headers(delivery.headers),
        )

    async def _persist(self, attempt: Callable[[], Awaitable[None]]) -> None:
        """Retry an I/O step with backoff for up to ``_PERSIST_SECONDS``, then give up."""
        delay, waited = 0.05, 0.0
        while True:
            try:
                await attempt()
                return
            except Exception:
                if waited >= _PERSIST_SECONDS:
                    raise
                _log.warning("retrying in %.2fs after an I/O error", delay, exc_info=True)
                await asyncio.sleep(delay)
                waited += delay
                delay = min(delay * 2, 2.0)

    async def _wait_for_turn(self, key: str) -> bytes | None:
        """The recorded reply for ``key``, or None once this worker holds the key.

        Another worker (another process) may be running the same key: then wait
        for its reply rather than run the handler a second time. Its hold
        expires if it dies, and this worker takes over.
        """
        while True:
            found = await self._idempotency.begin(key, self._holder, self._lease)
            if isinstance(found, bytes):
                return found
            if found:
                return None
            await self._clock.sleep(_CLAIM_POLL_SECONDS)

    def _keep_held(self, key: str) -> Callable[[], None]:
        """Renew the hold on ``key`` every third of the lease until the returned
        function is called. Most handlers finish before the first renewal, and
        then cost a timer, not a task."""
        loop = asyncio.get_running_loop()
        every = self._lease.total_seconds() / 3
        renewing: list[asyncio.Task[None]] = []

        def begin() -> None:
            renewing.append(loop.create_task(self._renew(key, every), name=f"hold {key}"))

        timer = loop.call_later(every, begin)

        def stop() -> None:
            timer.cancel()
            for task in renewing:
                task.cancel()

        return stop

    async def _renew(self, key: str, every: float) -> None:
        while True:
            try:
                held = await self._idempotency.begin(key, self._holder, self._lease)
            except Exception:  # Redis restarting: the next renewal may succeed
                _log.warning("could not renew the hold on %s", key, exc_info=True)
                held = True
            if held is not True:
                _log.warning("lost the hold on %s: another worker may run it too", key)
                return
            await asyncio.sleep(every)

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
        return TaskCompleted(**self._envelope(command), result=_result_of(result))

    def _encode_reply(self, reply: Reply) -> bytes:
        try:
            return self._codec.encode(reply)
        except ContractError as err:
            raise _Unanswerable(f"the reply cannot be encoded: {err}") from err

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
            recorded = _recorded_decoder.decode(data)
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
            "message_id": f"{command.message_id}:reply",
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


def _worth_recording(reply: Reply) -> bool:
    # A retryable failure is not recorded, so that the retry really executes.
    if isinstance(reply, TaskCompleted):
        return True
    return not reply.retryable and reply.error_type != INVALID_COMMAND


def _result_of(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    try:
        built = msgspec.to_builtins(value)
    except (TypeError, ValueError) as exc:
        raise _Unanswerable(f"the handler's result cannot be sent as JSON: {exc}") from exc
    if not isinstance(built, dict):
        raise _Unanswerable(
            f"a handler must return a msgspec Struct, a dict or None, got {type(value).__name__}"
        )
    return built


def _trace_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: headers[name] for name in _TRACE_HEADERS if name in headers}
