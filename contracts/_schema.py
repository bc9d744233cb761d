"""Machine-readable descriptions of the contract, for participants in other languages."""

from __future__ import annotations

import inspect
import typing
from typing import Any, Final

import msgspec

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
    WireMessage,
)
from contracts._routes import Exchange

_WIRE_MESSAGES: Final[tuple[type[msgspec.Struct], ...]] = typing.get_args(WireMessage)


def _channel_id(name: str) -> str:
    # The address of an exchange or queue, as a deployment with the default namespace has it.
    return routes.address(routes.DEFAULT_NAMESPACE, name)


# Exchange -> (what flows there, its messages). A channel's id is its exchange's
# address in the default namespace, so a reader of the document needs no mapping.
_CHANNELS: Final[dict[Exchange, tuple[str, tuple[type[msgspec.Struct], ...]]]] = {
    "commands": (
        "Topic exchange for commands; the routing key is "
        f"`{routes.command_key('{service}', '{command}')}` and each participant binds its "
        f"queue `{_channel_id(routes.commands_queue('{service}'))}` to its own service.",
        (Command,),
    ),
    "events": (
        "Topic exchange for everything addressed to the coordinator: replies to "
        "commands and requests to start, signal, cancel, retry, pause or resume sagas.",
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


def json_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) document describing every wire message.

    A message is valid when it matches exactly one entry of the top-level
    ``oneOf``; the ``type`` property (the tag) tells which. Unknown properties
    are allowed on purpose: receivers ignore them, so senders may add fields.

    Returns:
        A new JSON-serialisable dict on each call.
    """
    refs, defs = _components("#/$defs/{name}")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "saga-coordinator wire messages",
        "description": (
            f"Contract version {CONTRACTS_VERSION}. JSON objects tagged by their `type` "
            "property; unknown properties are ignored by receivers."
        ),
        "oneOf": list(refs),
        "$defs": defs,
    }


def asyncapi() -> dict[str, Any]:
    """A minimal AsyncAPI 3.0.0 document of the coordinator's channels.

    It is written from the coordinator's point of view: it sends commands and
    lifecycle announcements and receives events. A participant does the
    opposite on the same channels.

    Returns:
        A new JSON-serialisable dict on each call.
    """
    _, schemas = _components("#/components/schemas/{name}")
    messages = {
        cls.__name__: {
            "name": cls.__name__,
            "summary": _summary(cls),
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{cls.__name__}"},
        }
        for cls in _WIRE_MESSAGES
    }
    channels = {
        _channel_id(exchange): {
            "address": _channel_id(exchange),
            "description": description,
            "messages": {
                cls.__name__: {"$ref": f"#/components/messages/{cls.__name__}"} for cls in carried
            },
        }
        for exchange, (description, carried) in _CHANNELS.items()
    }
    operations = {
        operation_id: {
            "action": action,
            "summary": summary,
            "channel": {"$ref": f"#/channels/{_channel_id(exchange)}"},
            # AsyncAPI 3 requires an operation's messages to point into its channel.
            "messages": [
                {"$ref": f"#/channels/{_channel_id(exchange)}/messages/{cls.__name__}"}
                for cls in _CHANNELS[exchange][1]
            ],
        }
        for operation_id, (action, exchange, summary) in _OPERATIONS.items()
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "saga-coordinator",
            "version": CONTRACTS_VERSION,
            "description": "Commands, replies and lifecycle events of the saga coordinator.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


def _components(ref_template: str) -> tuple[tuple[dict[str, Any], ...], dict[str, Any]]:
    refs, defs = msgspec.json.schema_components(_WIRE_MESSAGES, ref_template=ref_template)
    for schema in defs.values():
        # msgspec copies docstrings verbatim; strip the source indentation so the
        # descriptions read well in generated docs and code.
        if "description" in schema:
            schema["description"] = inspect.cleandoc(schema["description"])
    return refs, defs


def _summary(cls: type) -> str:
    doc = inspect.getdoc(cls) or cls.__name__
    return doc.splitlines()[0]
