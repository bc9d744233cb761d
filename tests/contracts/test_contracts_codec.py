"""Round trips, the wire format and its evolution rules."""

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest

from contracts import (
    DEFAULT_CODEC,
    CancelSaga,
    Codec,
    Command,
    ContractError,
    SagaLifecycle,
    TaskFailed,
    WireMessage,
)


def decode_as_receiver(codec: Codec, data: bytes, cls: type[WireMessage]) -> object:
    """Decode the way the message's real receiver does."""
    if cls is Command:
        return codec.decode_command(data)
    if cls is SagaLifecycle:
        return codec.decode_lifecycle(data)
    return codec.decode_inbound(data)


def test_every_message_round_trips_tagged_with_its_class_name(any_message: WireMessage) -> None:
    data = DEFAULT_CODEC.encode(any_message)

    assert json.loads(data)["type"] == type(any_message).__name__
    assert DEFAULT_CODEC.decode(data, type(any_message)) == any_message
    decoded = decode_as_receiver(DEFAULT_CODEC, data, type(any_message))
    assert type(decoded) is type(any_message)
    assert decoded == any_message


def test_command_wire_format_is_pinned(make_command: Callable[..., Command]) -> None:
    # Participants in other languages are written against these exact names.
    assert json.loads(DEFAULT_CODEC.encode(make_command())) == {
        "type": "Command",
        "message_id": "order-42:reserve:action:2",
        "idempotency_key": "order-42:reserve:action",
        "saga_id": "order-42",
        "saga_name": "place_order",
        "saga_version": 3,
        "step": "reserve",
        "attempt": 2,
        "kind": "action",
        "service": "inventory",
        "command": "Reserve",
        "payload": {"sku": "A-1", "qty": 2, "tags": ["gift"], "meta": {"rush": True}},
        "causation_id": "order-42:start",
        "sent_at": "2024-05-17T12:30:15.250000Z",
        "deadline": "2024-05-17T12:30:45.250000Z",
    }


def test_decodes_a_reply_written_by_hand_by_another_language() -> None:
    body = b"""{
        "sent_at": "2024-05-17T14:30:15+02:00",
        "type": "TaskFailed",
        "message_id": "r-9", "saga_id": "order-42", "saga_name": "place_order",
        "step": "charge", "attempt": 1, "kind": "action",
        "causation_id": "order-42:charge:action:1",
        "error_type": "CardDeclined", "error_message": "insufficient funds"
    }"""

    reply = DEFAULT_CODEC.decode_inbound(body)

    assert reply == TaskFailed(
        message_id="r-9",
        saga_id="order-42",
        saga_name="place_order",
        step="charge",
        attempt=1,
        kind="action",
        causation_id="order-42:charge:action:1",
        error_type="CardDeclined",
        error_message="insufficient funds",
        sent_at=datetime(2024, 5, 17, 12, 30, 15, tzinfo=UTC),
    )
    assert reply.sent_at.utcoffset() == timedelta(hours=2)
    assert reply.retryable is True


def test_unknown_fields_are_ignored(any_message: WireMessage) -> None:
    # Forward compatibility: a newer sender may add fields this version lacks.
    wire = json.loads(DEFAULT_CODEC.encode(any_message))
    wire["added_in_v2"] = {"nested": [1, {"deep": None}]}
    wire["priority"] = 5
    data = json.dumps(wire).encode()

    assert DEFAULT_CODEC.decode(data, type(any_message)) == any_message
    assert decode_as_receiver(DEFAULT_CODEC, data, type(any_message)) == any_message


def test_fields_with_defaults_may_be_omitted(any_message: WireMessage) -> None:
    # Backward compatibility: an older sender does not know fields added later.
    cls = type(any_message)
    optional = [f for f in msgspec.structs.fields(cls) if not f.required]
    wire = json.loads(DEFAULT_CODEC.encode(any_message))
    for field in optional:
        del wire[field.encode_name]

    decoded = DEFAULT_CODEC.decode(json.dumps(wire).encode(), cls)

    assert optional, f"{cls.__name__} has no optional field to check"
    for field in optional:
        expected = field.default if field.default_factory is msgspec.NODEFAULT else {}
        assert getattr(decoded, field.name) == expected, field.name


def test_documented_defaults() -> None:
    failed = TaskFailed(
        message_id="r",
        saga_id="s",
        saga_name="n",
        step="a",
        attempt=1,
        kind="action",
        causation_id="c",
        error_type="E",
        error_message="m",
        sent_at=datetime(2024, 1, 1, tzinfo=UTC),
    )
    cancel = CancelSaga(message_id="c", saga_id="s", sent_at=datetime(2024, 1, 1, tzinfo=UTC))

    assert failed.retryable is True
    assert cancel.reason == "cancelled by request"


def test_json_payload_defaults_are_not_shared_between_instances() -> None:
    first = SagaLifecycle(
        message_id="1",
        saga_id="s",
        saga_name="n",
        saga_version=1,
        event="started",
        sent_at=datetime(2024, 1, 1, tzinfo=UTC),
    )
    second = SagaLifecycle(
        message_id="2",
        saga_id="s",
        saga_name="n",
        saga_version=1,
        event="started",
        sent_at=datetime(2024, 1, 1, tzinfo=UTC),
    )

    first.data["x"] = 1

    assert second.data == {}


def test_messages_are_frozen(any_message: WireMessage) -> None:
    with pytest.raises(AttributeError):
        any_message.saga_id = "other"  # type: ignore[misc]


def test_messages_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        CancelSaga("c-1", "order-42", datetime(2024, 1, 1, tzinfo=UTC))  # type: ignore[call-arg]


def test_routing_key_is_service_dot_command(make_command: Callable[..., Command]) -> None:
    command = make_command(service="payments", command="Charge")

    assert command.routing_key == "payments.Charge"


@pytest.mark.parametrize("field", ["sent_at", "deadline"])
def test_naive_timestamps_are_refused_at_construction(
    make_command: Callable[..., Command], field: str
) -> None:
    with pytest.raises(ContractError) as caught:
        make_command(**{field: datetime(2024, 5, 17, 12, 0)})

    assert caught.value.reason == "schema_mismatch"
    assert str(caught.value) == (
        f"`{field}` must be timezone-aware (use UTC), got 2024-05-17T12:00:00"
    )


def test_aware_non_utc_timestamps_are_accepted(make_command: Callable[..., Command]) -> None:
    paris = timezone(timedelta(hours=2))
    command = make_command(sent_at=datetime(2024, 5, 17, 14, 0, tzinfo=paris))

    decoded = DEFAULT_CODEC.decode_command(DEFAULT_CODEC.encode(command))

    assert decoded.sent_at == datetime(2024, 5, 17, 12, 0, tzinfo=UTC)


def test_generic_decode_of_an_untagged_type() -> None:
    assert DEFAULT_CODEC.decode(b'{"a": [1, 2]}', dict[str, list[int]]) == {"a": [1, 2]}


def test_codec_refuses_a_non_positive_limit() -> None:
    with pytest.raises(ValueError, match="max_size must be positive, got 0"):
        Codec(max_size=0)


def test_default_limit_is_64_kib() -> None:
    assert DEFAULT_CODEC.max_size == 65536
