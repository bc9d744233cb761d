"""The AsyncAPI 3.0 document: the channels of one namespace and, for the sagas
named, the payload of every command, reply and signal they exchange.

The generic envelope (``Command`` with ``payload: object``) is all a participant
in another language learns without the sagas; with them, each command a service
receives is a message of its own whose ``payload`` is the command's schema, and
each reply names the ``result`` its step expects.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from contracts import _routes as routes
from contracts._messages import (
    CONTRACTS_VERSION,
    CancelSaga,
    Command,
    PauseSaga,
    ResumeSaga,
    RetrySaga,
    SagaLifecycle,
    Signal,
    StartSaga,
    TaskCompleted,
    TaskFailed,
)
from contracts._routes import Exchange
from contracts._schema import WIRE_MESSAGES, components, summary

__all__ = ["SagaContract", "StepContract", "asyncapi"]


@dataclass(frozen=True, kw_only=True)
class StepContract:
    """What one step sends and expects back.

    Attributes:
        step: The step's name.
        service: The participant service that receives its commands.
        command: The type of the command that does the step.
        undo: The type of the command that compensates it, if any.
        result: The type of ``TaskCompleted.result``, if the step reads one.
    """

    step: str
    service: str
    command: type
    undo: type | None = None
    result: type | None = None


@dataclass(frozen=True, kw_only=True)
class SagaContract:
    """The messages of one saga definition: its steps and the signals it waits for
    (signal name, and the type of ``Signal.data`` or None for any object)."""

    name: str
    steps: tuple[StepContract, ...] = ()
    signals: tuple[tuple[str, type | None], ...] = ()


# Exchange -> (what flows there, its messages); the text says where, in the namespace.
def _exchanges(namespace: str) -> dict[Exchange, tuple[str, tuple[type, ...]]]:
    queue = routes.address(namespace, routes.commands_queue("{service}"))
    return {
        "commands": (
            "Topic exchange for commands; the routing key is "
            f"`{routes.command_key('{service}', '{command}')}` and each participant binds its "
            f"queue `{queue}` to its own service.",
            (Command,),
        ),
        "events": (
            "Topic exchange for everything addressed to the coordinator: replies to "
            "commands, routing key "
            f"`{routes.reply_key('{service}', '{saga}', '{TaskCompleted|TaskFailed}')}`, "
            "published with the AMQP `user_id` of the service's RabbitMQ user (the broker "
            "validates it; the coordinator checks it is the step's service); and requests "
            f"to start (`{routes.start_key('{saga}')}`), signal (`{routes.SIGNAL_KEY}`), "
            f"cancel (`{routes.CANCEL_KEY}`), retry (`{routes.RETRY_KEY}`), pause "
            f"(`{routes.PAUSE_KEY}`) or resume (`{routes.RESUME_KEY}`) sagas, from the "
            "coordinator's and the operators' users only.",
            (
                TaskCompleted,
                TaskFailed,
                StartSaga,
                Signal,
                CancelSaga,
                RetrySaga,
                PauseSaga,
                ResumeSaga,
            ),
        ),
        "lifecycle": (
            "Announcements of sagas starting and ending, for other services to react to.",
            (SagaLifecycle,),
        ),
    }


# Operation id -> (action, exchange, summary); seen from the coordinator.
_OPERATIONS: Final[dict[str, tuple[str, Exchange, str]]] = {
    "sendCommands": ("send", "commands", "The coordinator sends step commands."),
    "receiveEvents": ("receive", "events", "The coordinator receives replies and requests."),
    "sendLifecycle": ("send", "lifecycle", "The coordinator announces saga lifecycle events."),
}


def asyncapi(
    namespace: str = routes.DEFAULT_NAMESPACE, sagas: Sequence[SagaContract] = ()
) -> dict[str, Any]:
    """An AsyncAPI 3.0.0 document of the coordinator's channels in ``namespace``.

    It is written from the coordinator's point of view: it sends commands and
    lifecycle announcements and receives events. A participant does the
    opposite on the same channels; each service named by ``sagas`` also has
    the channel of its own queue, with an operation that receives from it.

    Returns:
        A new JSON-serialisable dict on each call.
    """
    extra = _types(sagas)
    refs, schemas = components("#/components/schemas/{name}", extra)
    ref = dict(zip((*WIRE_MESSAGES, *extra), refs, strict=True))
    messages: dict[str, Any] = {
        cls.__name__: _message(cls.__name__, summary(cls), ref[cls]) for cls in WIRE_MESSAGES
    }
    exchanges = _exchanges(namespace)
    carried = {ex: [cls.__name__ for cls in types] for ex, (_, types) in exchanges.items()}
    queues: dict[str, list[str]] = {}
    for saga in sagas:
        for message_id, message, service in _saga_messages(saga, namespace, ref):
            messages[message_id] = message
            if service is None:
                carried["events"].append(message_id)
            else:
                carried["commands"].append(message_id)
                queues.setdefault(service, []).append(message_id)
    channels = {
        routes.address(namespace, ex): _channel(routes.address(namespace, ex), text, carried[ex])
        for ex, (text, _) in exchanges.items()
    }
    operations = {
        operation_id: _operation(action, routes.address(namespace, ex), summary_, carried[ex])
        for operation_id, (action, ex, summary_) in _OPERATIONS.items()
    }
    for service, ids in queues.items():
        queue = routes.address(namespace, routes.commands_queue(service))
        channels[queue] = _channel(queue, f"The queue of participant service {service!r}.", ids)
        operations[f"{service}.receiveCommands"] = _operation(
            "receive", queue, f"Participant {service!r} receives its commands.", ids
        )
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "saga-coordinator",
            "version": CONTRACTS_VERSION,
            "description": "Commands, replies and lifecycle events of the saga coordinator"
            + (f" (sagas: {', '.join(s.name for s in sagas)})." if sagas else "."),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


def _types(sagas: Iterable[SagaContract]) -> tuple[type, ...]:
    found: dict[type, None] = {}  # ordered, without duplicates
    for saga in sagas:
        for step in saga.steps:
            for cls in (step.command, step.undo, step.result):
                if cls is not None and cls not in WIRE_MESSAGES:
                    found[cls] = None
        for _, data in saga.signals:
            if data is not None:
                found[data] = None
    return tuple(found)


def _saga_messages(
    saga: SagaContract, namespace: str, ref: dict[type, dict[str, Any]]
) -> Iterable[tuple[str, dict[str, Any], str | None]]:
    """(message id, message, the service whose queue carries it or None for events)."""
    events = routes.address(namespace, "events")
    commands = routes.address(namespace, "commands")
    for step in saga.steps:
        for kind, cls in (("action", step.command), ("compensation", step.undo)):
            if cls is None:
                continue
            key = routes.command_key(step.service, cls.__name__)
            text = (
                f"Saga {saga.name!r}, step {step.step!r} ({kind}): published to `{commands}` "
                f"with routing key `{key}`; the command's fields are in `payload`."
            )
            fixed = {
                "service": step.service,
                "command": cls.__name__,
                "step": step.step,
                "kind": kind,
            }
            payload = _narrowed(ref[Command], fixed, "payload", ref[cls])
            message_id = f"{saga.name}.{step.step}.{kind}"
            yield message_id, _message(cls.__name__, text, payload), step.service
        if step.result is not None:
            key = routes.reply_key(step.service, saga.name, "TaskCompleted")
            text = (
                f"Saga {saga.name!r}, step {step.step!r}: the reply that did the step, published "
                f"to `{events}` with routing key `{key}`; what it returns is in `result`."
            )
            fixed = {"saga_name": saga.name, "step": step.step, "kind": "action"}
            payload = _narrowed(ref[TaskCompleted], fixed, "result", ref[step.result])
            yield (
                f"{saga.name}.{step.step}.completed",
                _message("TaskCompleted", text, payload),
                None,
            )
    for signal, data in saga.signals:
        if data is None:
            continue
        text = (
            f"Saga {saga.name!r}: the signal {signal!r}, published to `{events}` with routing "
            f"key `{routes.SIGNAL_KEY}`; its fields are in `data`."
        )
        payload = _narrowed(ref[Signal], {"name": signal}, "data", ref[data])
        yield f"{saga.name}.signal.{signal}", _message("Signal", text, payload), None


def _narrowed(
    envelope: dict[str, Any], fixed: dict[str, str], field: str, schema: dict[str, Any]
) -> dict[str, Any]:
    """The envelope, with some fields fixed and one field's schema given."""
    properties: dict[str, Any] = {name: {"const": value} for name, value in fixed.items()}
    properties[field] = schema
    return {"allOf": [envelope, {"type": "object", "properties": properties}]}


# What a message may carry besides its body, for a participant written without the SDK.
_HEADERS: Final = {
    "type": "object",
    "properties": {
        "traceparent": {
            "type": "string",
            "description": "W3C trace context of the span that sent it; a receiver that "
            "continues it (OpenTelemetry's propagators do) joins the saga's trace.",
        },
        "tracestate": {"type": "string", "description": "W3C trace state, with traceparent."},
        routes.SIG_HEADER: {
            "type": "string",
            "description": "Signed deployments only: space-separated v1,<kid>,<base64 "
            "HMAC-SHA256> entries (several during a key rotation). The HMAC is over "
            'b"saga-sig/v1\\n" + the compact JSON array [kid, message_id, x-sig-ts, '
            "exchange without the namespace, routing key, content type] + "
            'b"\\n" + the body. A message without a valid one is dead-lettered '
            "(missing_signature, unknown_key, bad_signature).",
        },
        routes.SIG_TS_HEADER: {
            "type": "integer",
            "description": "Signed deployments only: when it was signed, Unix seconds. "
            "Dead-lettered future_timestamp when ahead of the receiver's clock, stale "
            "when older than the time it remembers message ids.",
        },
    },
}


def _message(name: str, summary_: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "summary": summary_,
        "contentType": "application/json",
        "headers": _HEADERS,
        "payload": payload,
    }


def _channel(address: str, description: str, message_ids: Iterable[str]) -> dict[str, Any]:
    return {
        "address": address,
        "description": description,
        "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in message_ids},
    }


def _operation(action: str, channel: str, summary_: str, ids: Iterable[str]) -> dict[str, Any]:
    return {
        "action": action,
        "summary": summary_,
        "channel": {"$ref": f"#/channels/{channel}"},
        # AsyncAPI 3 requires an operation's messages to point into its channel.
        "messages": [{"$ref": f"#/channels/{channel}/messages/{m}"} for m in ids],
    }
