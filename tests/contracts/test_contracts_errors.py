"""Every way a body can fail to decode or encode, and the error it becomes."""

import json
from collections.abc import Callable
from functools import partial
from typing import Any

import msgspec
import pytest

from contracts import (
    DEFAULT_CODEC,
    Codec,
    Command,
    ContractError,
    SagaError,
    WireMessage,
)


def command_wire(make_command: Callable[..., Command], **changes: Any) -> bytes:
    wire = json.loads(DEFAULT_CODEC.encode(make_command()))
    wire.update(changes)
    return json.dumps(wire).encode()


def contract_error(call: Callable[[], object]) -> ContractError:
    with pytest.raises(ContractError) as caught:
        call()
    return caught.value


def test_contract_error_sits_under_the_root_and_is_a_value_error() -> None:
    error = contract_error(lambda: DEFAULT_CODEC.decode_inbound(b"{"))

    assert isinstance(error, SagaError)
    assert isinstance(error, ValueError)
    assert error.message == str(error)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"type": "Signal", "saga_id": ', "input data was truncated"),
        (b"{'type': 'Signal'}", "JSON is malformed: object keys must be strings (byte 1)"),
        (b'{"type": "Signal"} trailing', "JSON is malformed: trailing characters (byte 20)"),
        (b"[1, oops", "JSON is malformed: invalid character (byte 4)"),
        (b"", "input data was truncated"),
    ],
)
def test_malformed_json(body: bytes, message: str) -> None:
    error = contract_error(lambda: DEFAULT_CODEC.decode_inbound(body))

    assert error.reason == "malformed_json"
    assert str(error) == message
    assert isinstance(error.__cause__, msgspec.DecodeError)


def test_malformed_json_after_a_bad_tag_is_still_malformed() -> None:
    # msgspec stops at the unknown tag with a ValidationError; the body is
    # broken further on, and that is what the sender must fix first.
    body = b'{"type": "Teleport", "saga_id": oops}'

    error = contract_error(lambda: DEFAULT_CODEC.decode_inbound(body))

    assert error.reason == "malformed_json"
    assert str(error).startswith("JSON is malformed: invalid character")


def test_wrong_field_type_names_the_path(make_command: Callable[..., Command]) -> None:
    body = command_wire(make_command, attempt="2")

    error = contract_error(lambda: DEFAULT_CODEC.decode_command(body))

    assert error.reason == "schema_mismatch"
    assert str(error) == "expected `int`, got `str` - at `$.attempt`"
    assert isinstance(error.__cause__, msgspec.ValidationError)


def test_invalid_step_kind(make_command: Callable[..., Command]) -> None:
    body = command_wire(make_command, kind="undo")

    error = contract_error(lambda: DEFAULT_CODEC.decode_command(body))

    assert error.reason == "schema_mismatch"
    assert str(error) == "invalid enum value 'undo' - at `$.kind`"


def test_naive_timestamp_on_the_wire(make_command: Callable[..., Command]) -> None:
    body = command_wire(make_command, sent_at="2024-05-17T12:30:15")

    error = contract_error(lambda: DEFAULT_CODEC.decode_command(body))

    assert error.reason == "schema_mismatch"
    assert str(error) == "expected `datetime` with a timezone component - at `$.sent_at`"


def test_missing_required_field(any_message: WireMessage) -> None:
    wire = json.loads(DEFAULT_CODEC.encode(any_message))
    del wire["saga_id"]

    error = contract_error(
        lambda: DEFAULT_CODEC.decode(json.dumps(wire).encode(), type(any_message))
    )

    assert error.reason == "schema_mismatch"
    assert str(error) == "object missing required field `saga_id`"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"saga_id": "s"}', "object missing required field `type`"),
        (b'{"type": 7}', "expected `str` - at `$.type`"),
        (b'[{"type": "Signal"}]', "expected `object`, got `array`"),
        (b'"TaskCompleted"', "expected `object`, got `str`"),
    ],
)
def test_inbound_body_without_a_usable_tag(body: bytes, message: str) -> None:
    error = contract_error(lambda: DEFAULT_CODEC.decode_inbound(body))

    assert error.reason == "schema_mismatch"
    assert str(error) == message


def test_unknown_type_tag() -> None:
    body = b'{"type": "Teleport", "saga_id": "order-42"}'

    error = contract_error(lambda: DEFAULT_CODEC.decode_inbound(body))

    assert error.reason == "unknown_type"
    assert str(error) == (
        "message type 'Teleport' is not one of "
        "TaskCompleted, TaskFailed, StartSaga, Signal, CancelSaga, RetrySaga, PauseSaga, ResumeSaga"
    )


def test_a_command_sent_to_the_coordinator_queue_is_an_unknown_type(
    make_command: Callable[..., Command],
) -> None:
    body = DEFAULT_CODEC.encode(make_command())

    error = contract_error(lambda: DEFAULT_CODEC.decode_inbound(body))

    assert error.reason == "unknown_type"
    assert str(error).startswith("message type 'Command' is not one of TaskCompleted")


def test_anything_but_a_command_sent_to_a_participant_is_an_unknown_type(
    all_messages: list[WireMessage],
) -> None:
    others = [msg for msg in all_messages if not isinstance(msg, Command)]
    for message in others:
        body = DEFAULT_CODEC.encode(message)

        error = contract_error(partial(DEFAULT_CODEC.decode_command, body))

        assert error.reason == "unknown_type"
        assert str(error) == f"message type {type(message).__name__!r} is not one of Command"
    assert len(others) == 9


def test_unknown_type_with_a_huge_tag_is_not_echoed_in_full() -> None:
    tag = "X" * 10_000
    body = json.dumps({"type": tag}).encode()

    error = contract_error(lambda: DEFAULT_CODEC.decode_inbound(body))

    assert error.reason == "unknown_type"
    assert str(error).startswith(f"message type '{'X' * 64}...' is not one of")
    assert len(str(error)) < 200


@pytest.mark.parametrize(
    "decode",
    [
        Codec.decode_inbound,
        Codec.decode_command,
        Codec.decode_lifecycle,
        lambda codec, data: codec.decode(data, Command),
    ],
    ids=["inbound", "command", "lifecycle", "generic"],
)
def test_too_large_is_checked_before_parsing(decode: Callable[[Codec, bytes], object]) -> None:
    # Not even JSON: only the size may be looked at.
    error = contract_error(lambda: decode(Codec(max_size=100), b"x" * 101))

    assert error.reason == "too_large"
    assert str(error) == "message is 101 bytes; the limit is 100"


def test_a_body_exactly_at_the_limit_decodes(any_message: WireMessage) -> None:
    data = DEFAULT_CODEC.encode(any_message)
    codec = Codec(max_size=len(data))

    assert codec.decode(data, type(any_message)) == any_message
    assert codec.encode(any_message) == data


def test_too_large_on_encode(make_command: Callable[..., Command]) -> None:
    command = make_command(payload={"blob": "x" * 70_000})
    size = len(Codec(max_size=1 << 20).encode(command))

    error = contract_error(lambda: DEFAULT_CODEC.encode(command))

    assert error.reason == "too_large"
    assert str(error) == f"message is {size} bytes; the limit is 65536"


def test_payload_that_json_cannot_carry(make_command: Callable[..., Command]) -> None:
    command = make_command(payload={"handle": object()})

    error = contract_error(lambda: DEFAULT_CODEC.encode(command))

    assert error.reason == "schema_mismatch"
    assert str(error) == "cannot encode Command: encoding objects of type object is unsupported"
