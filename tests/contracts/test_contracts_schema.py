"""The JSON Schema and AsyncAPI exports describe what the codec really sends."""

import json
from typing import Any

from contracts import (
    CONTRACTS_VERSION,
    DEFAULT_CODEC,
    WireMessage,
    asyncapi,
    json_schema,
)

MESSAGE_NAMES = {
    "Command",
    "TaskCompleted",
    "TaskFailed",
    "StartSaga",
    "Signal",
    "CancelSaga",
    "RetrySaga",
    "PauseSaga",
    "ResumeSaga",
    "SagaLifecycle",
}


def resolve(document: dict[str, Any], ref: str) -> Any:
    """Follow a local JSON Pointer reference (RFC 6901) inside ``document``."""
    assert ref.startswith("#/"), f"not a local reference: {ref}"
    node: Any = document
    for token in ref[2:].split("/"):
        key = token.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), f"{ref}: {key!r} is under a non-object"
        assert key in node, f"{ref}: no {key!r}"
        node = node[key]
    return node


def all_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in all_refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in all_refs(item)]
    return []


def test_json_schema_header_and_one_def_per_message() -> None:
    schema = json_schema()

    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(schema["$defs"]) == MESSAGE_NAMES
    assert sorted(entry["$ref"] for entry in schema["oneOf"]) == sorted(
        f"#/$defs/{name}" for name in MESSAGE_NAMES
    )
    for ref in all_refs(schema):
        resolve(schema, ref)
    json.dumps(schema)  # what `saga contracts --json-schema` prints


def test_each_def_requires_its_own_tag() -> None:
    defs = json_schema()["$defs"]

    for name, definition in defs.items():
        assert definition["type"] == "object"
        assert definition["properties"]["type"] == {"enum": [name]}
        assert "type" in definition["required"]
        # Receivers ignore unknown fields, so the schema must allow them.
        assert definition.get("additionalProperties", True) is not False


def test_command_schema_required_fields_and_types() -> None:
    command = json_schema()["$defs"]["Command"]
    properties = command["properties"]

    assert set(command["required"]) == {
        "type",
        "message_id",
        "idempotency_key",
        "saga_id",
        "saga_name",
        "saga_version",
        "step",
        "attempt",
        "kind",
        "service",
        "command",
        "payload",
        "sent_at",
    }
    assert properties["attempt"] == {"type": "integer"}
    assert properties["kind"] == {"enum": ["action", "compensation"]}
    assert properties["payload"] == {"type": "object"}
    assert properties["sent_at"] == {"type": "string", "format": "date-time"}
    assert properties["deadline"]["default"] is None
    assert command["description"].startswith("The coordinator asks a participant")
    # Docstring indentation is stripped for readers of the generated docs.
    assert "\n    message_id:" in command["description"]
    assert "\n        message_id:" not in command["description"]


def test_defaults_are_published_for_optional_fields() -> None:
    defs = json_schema()["$defs"]

    assert defs["TaskFailed"]["properties"]["retryable"] == {"type": "boolean", "default": True}
    assert "retryable" not in defs["TaskFailed"]["required"]
    assert defs["CancelSaga"]["properties"]["reason"]["default"] == "cancelled by request"
    assert defs["TaskCompleted"]["properties"]["result"]["default"] == {}
    events = defs["SagaLifecycle"]["properties"]["event"]["enum"]
    assert set(events) == {"started", "completed", "compensated", "failed", "cancelled"}


def test_every_encoded_message_fits_its_schema(any_message: WireMessage) -> None:
    # A structural check that needs no validator library: the encoder and the
    # schema agree on names, requiredness and the tag.
    definition = json_schema()["$defs"][type(any_message).__name__]
    wire = json.loads(DEFAULT_CODEC.encode(any_message))

    assert set(definition["required"]) <= set(wire)
    assert set(wire) == set(definition["properties"])
    assert wire["type"] in definition["properties"]["type"]["enum"]
    json_types = {"string": str, "integer": int, "boolean": bool, "object": dict}
    for name, value in wire.items():
        declared = definition["properties"][name].get("type")
        if declared in json_types and value is not None:
            assert isinstance(value, json_types[declared]), name


def test_asyncapi_document_shape() -> None:
    doc = asyncapi()

    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] == "saga-coordinator"
    assert doc["info"]["version"] == CONTRACTS_VERSION
    channels = doc["channels"]
    assert {cid: ch["address"] for cid, ch in channels.items()} == {
        "saga.commands": "saga.commands",
        "saga.events": "saga.events",
        "saga.lifecycle": "saga.lifecycle",
    }
    assert set(channels["saga.commands"]["messages"]) == {"Command"}
    assert set(channels["saga.events"]["messages"]) == {
        "TaskCompleted",
        "TaskFailed",
        "StartSaga",
        "Signal",
        "CancelSaga",
        "RetrySaga",
        "PauseSaga",
        "ResumeSaga",
    }
    assert set(channels["saga.lifecycle"]["messages"]) == {"SagaLifecycle"}
    json.dumps(doc)


def test_asyncapi_operations_from_the_coordinators_side() -> None:
    doc = asyncapi()

    summary = {(op["action"], op["channel"]["$ref"]) for op in doc["operations"].values()}
    assert summary == {
        ("send", "#/channels/saga.commands"),
        ("receive", "#/channels/saga.events"),
        ("send", "#/channels/saga.lifecycle"),
    }
    for operation in doc["operations"].values():
        # AsyncAPI 3: an operation's messages are a subset of its channel's.
        channel_ref = operation["channel"]["$ref"]
        for message in operation["messages"]:
            assert message["$ref"].startswith(f"{channel_ref}/messages/")


def test_asyncapi_references_all_resolve() -> None:
    doc = asyncapi()
    refs = all_refs(doc)

    for ref in refs:
        resolve(doc, ref)
    assert {f"#/components/schemas/{name}" for name in MESSAGE_NAMES} <= set(refs)
    assert {f"#/components/messages/{name}" for name in MESSAGE_NAMES} <= set(refs)


def test_asyncapi_messages_carry_json_payload_schemas() -> None:
    components = asyncapi()["components"]

    assert set(components["messages"]) == MESSAGE_NAMES
    assert set(components["schemas"]) == MESSAGE_NAMES
    for name, message in components["messages"].items():
        assert message["contentType"] == "application/json"
        assert message["payload"] == {"$ref": f"#/components/schemas/{name}"}
        assert message["summary"] and "\n" not in message["summary"]


def test_schema_exports_match_msgspec_for_each_message() -> None:
    # The two documents must not drift apart: same definitions, different ref roots.
    defs = json_schema()["$defs"]
    schemas = asyncapi()["components"]["schemas"]

    as_defs = json.dumps(schemas).replace("#/components/schemas/", "#/$defs/")
    assert json.loads(as_defs) == defs


def test_exports_are_fresh_copies() -> None:
    json_schema()["$defs"]["Command"]["properties"].clear()
    asyncapi()["channels"].clear()

    assert "attempt" in json_schema()["$defs"]["Command"]["properties"]
    assert len(asyncapi()["channels"]) == 3
