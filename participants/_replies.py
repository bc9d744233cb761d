"""What the worker sends and records: the replies to commands, the recorded form
of a reply, and the checks that a handler's result can be sent at all."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final, final

import msgspec

from contracts import Command, ContractError, Reply, TaskCompleted, TaskFailed, routes
from coordinator.ports import Clock

__all__ = [
    "ALREADY_COMPENSATED",
    "INVALID_COMMAND",
    "Recorded",
    "ReplyMaker",
    "Unanswerable",
    "record_of",
    "recorded_for_the_key",
    "result_of",
    "trace_headers",
]

_log = logging.getLogger("participants")

# The error type of the refusal of an action whose step's compensation has begun
# (or is recorded): it never runs after its undo. Not retryable; the coordinator
# has stopped waiting for that action, so it records the reply as late.
ALREADY_COMPENSATED: Final = "AlreadyCompensated"
INVALID_COMMAND: Final = "InvalidCommand"
# A failure's text travels in the reply; a bound keeps a huge message (or a
# repr of a huge value) from making the reply itself undeliverable.
_MAX_ERROR_MESSAGE: Final = 2000
# Forwarded from the command to the reply so the trace continues.
_TRACE_HEADERS: Final = ("traceparent", "tracestate")


class Recorded(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a reply says, without its envelope: what the idempotency store keeps.

    A whole reply, as earlier versions recorded, decodes into it as well.
    """

    result: dict[str, Any] | None = None
    error_type: str | None = None
    error_message: str = ""
    retryable: bool = False


_recorded_decoder = msgspec.json.Decoder(Recorded)
_recorded_encoder = msgspec.json.Encoder()


def record_of(reply: Reply) -> bytes:
    """What the store keeps of ``reply``."""
    if isinstance(reply, TaskCompleted):
        return _recorded_encoder.encode(Recorded(result=reply.result))
    return _recorded_encoder.encode(
        Recorded(
            error_type=reply.error_type,
            error_message=reply.error_message,
            retryable=reply.retryable,
        )
    )


def recorded_for_the_key(reply: Reply) -> bool:
    """Whether ``reply`` answers every attempt of its key, or only its own command.

    A retryable failure answers its command alone, so that the next attempt
    really runs; so does an invalid command, which nothing ran, so that a fixed
    deployment may answer a later one. Either is still recorded for its command:
    a redelivery of that command gets the same answer again.
    """
    if isinstance(reply, TaskCompleted):
        return True
    return not reply.retryable and reply.error_type != INVALID_COMMAND


class Unanswerable(Exception):
    """The handler ran but its result cannot be sent; the outcome stays unknown."""


def result_of(value: object) -> dict[str, Any]:
    """A handler's return value as a reply's ``result``.

    Raises:
        Unanswerable: It is not a Struct, a dict or None, or not JSON.
    """
    if value is None:
        return {}
    try:
        built = msgspec.to_builtins(value)
    except (TypeError, ValueError) as exc:
        raise Unanswerable(f"the handler's result cannot be sent as JSON: {exc}") from exc
    if not isinstance(built, dict):
        raise Unanswerable(
            f"a handler must return a msgspec Struct, a dict or None, got {type(value).__name__}"
        )
    return built


def trace_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: headers[name] for name in _TRACE_HEADERS if name in headers}


@final
class ReplyMaker:
    """Makes the reply to a command, stamped with the worker's clock.

    A reply's id is ``{command message_id}:reply``, so a reply sent twice is
    recognised.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def completed(self, command: Command, result: dict[str, Any]) -> TaskCompleted:
        return TaskCompleted(**self._envelope(command), result=result)

    def failed(
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

    def refused(self, command: Command) -> TaskFailed:
        """The refusal of an action whose step's compensation has begun."""
        _log.warning(
            "refused %s: the compensation of step %r of saga %s has begun",
            command.message_id,
            command.step,
            command.saga_id,
        )
        return self.failed(
            command,
            ALREADY_COMPENSATED,
            f"the compensation of step {command.step!r} has begun or is done: "
            f"its action is refused so that it never runs after its undo",
            retryable=False,
        )

    def recorded(self, command: Command, data: bytes) -> Reply:
        """The recorded outcome ``data``, as the reply to this command.

        Raises:
            ContractError: ``data`` is not a recorded reply.
        """
        try:
            recorded = _recorded_decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise ContractError(
                f"the idempotency store holds something else than a reply: {exc}",
                reason="schema_mismatch",
            ) from exc
        if recorded.error_type is None:
            return self.completed(command, recorded.result or {})
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
