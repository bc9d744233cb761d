"""``saga contracts --asyncapi --saga ...``: the AsyncAPI document of a deployment's
sagas, valid AsyncAPI 3.0, with a schema per command, reply and signal that a
participant in another language can check its messages against.

``asyncapi-3.0.0.schema.json`` beside this file is ``schemas/3.0.0.json`` of the
npm package ``@asyncapi/specs`` 6.11.1 (Apache-2.0), unchanged: no PyPI package
ships it, and the tests run offline.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7
from typer.testing import CliRunner

from contracts import DEFAULT_CODEC, Command, asyncapi
from coordinator import Saga
from coordinator._errors import SagaDefinitionError
from coordinator.adapters.memory import MemoryTransport
from coordinator.adapters.signing import Keyring, SigningTransport
from coordinator.cli._app import app
from coordinator.cli._contracts import saga_contract
from coordinator.examples.orders.messages import Line, Reserve

ASYNCAPI_3 = json.loads((Path(__file__).parent / "asyncapi-3.0.0.schema.json").read_text())
ORDERS = "coordinator.examples.orders:saga"
runner = CliRunner()
SECRET = "inventory-secret-of-at-least-32-bytes!!"


def document(*args: str, namespace: str = "shop") -> dict[str, Any]:
    result = runner.invoke(
        app, ["contracts", "--asyncapi", *args], env={"SAGA_NAMESPACE": namespace}
    )
    assert result.exit_code == 0, result.output
    found: dict[str, Any] = json.loads(result.output)
    return found


def asyncapi_errors(doc: dict[str, Any]) -> list[str]:
    return [error.message for error in jsonschema.Draft7Validator(ASYNCAPI_3).iter_errors(doc)]


def message_check(doc: dict[str, Any], message_id: str) -> jsonschema.Draft7Validator:
    """A validator of one message's payload, generated from the document alone:
    what a participant in another language would generate its check from."""
    registry: Registry[Any] = Registry().with_resource(
        "urn:asyncapi", Resource.from_contents(doc, default_specification=DRAFT7)
    )
    pointer = f"urn:asyncapi#/components/messages/{message_id}/payload"
    return jsonschema.Draft7Validator({"$ref": pointer}, registry=registry)


def reserve_command(**changes: Any) -> dict[str, Any]:
    """A ``Reserve`` command as the coordinator puts it on the wire."""
    command = Command(
        message_id="m-1",
        saga_id="A-1",
        sent_at=datetime(2026, 1, 1, tzinfo=UTC),
        idempotency_key="A-1:reserve:action",
        saga_name="order.place",
        saga_version=1,
        step="reserve",
        attempt=1,
        kind="action",
        service="inventory",
        command="Reserve",
        payload=msgspec.to_builtins(Reserve(order_id="A-1", lines=[Line("sku-1", 2)])),
    )
    wire: dict[str, Any] = json.loads(DEFAULT_CODEC.encode(command))
    return {**wire, **changes}


def test_the_vendored_schema_refuses_a_broken_document() -> None:
    broken = asyncapi()
    broken["channels"]["saga.commands"]["adress"] = "typo"
    assert asyncapi_errors(broken)
    assert asyncapi_errors({**asyncapi(), "asyncapi": "2.6.0"})


def test_the_documents_are_asyncapi_3() -> None:
    assert asyncapi_errors(asyncapi()) == []
    assert asyncapi_errors(document()) == []
    assert asyncapi_errors(document("--saga", ORDERS)) == []


def test_every_command_reply_and_signal_of_the_saga_is_a_message() -> None:
    messages = document("--saga", ORDERS)["components"]["messages"]
    sagas = {name for name in messages if name.startswith("order.place.")}
    steps = ("reserve", "charge", "points", "ship")
    commands = {
        f"order.place.{step}.{kind}" for step in steps for kind in ("action", "compensation")
    }
    replies = {f"order.place.{step}.completed" for step in ("reserve", "charge", "ship")}
    assert sagas == commands | replies | {"order.place.signal.approval"}


def test_the_channels_are_those_of_the_namespace() -> None:
    doc = document("--saga", ORDERS, namespace="shop")
    assert sorted(ch["address"] for ch in doc["channels"].values()) == [
        "shop.commands",
        "shop.events",
        "shop.inventory.commands",
        "shop.lifecycle",
        "shop.loyalty.commands",
        "shop.payments.commands",
        "shop.shipping.commands",
    ]
    inventory = doc["channels"]["shop.inventory.commands"]["messages"]
    assert set(inventory) == {"order.place.reserve.action", "order.place.reserve.compensation"}
    receive = doc["operations"]["inventory.receiveCommands"]
    assert receive["action"] == "receive"
    assert receive["channel"] == {"$ref": "#/channels/shop.inventory.commands"}


def test_a_command_as_sent_validates_against_its_generated_schema() -> None:
    check = message_check(document("--saga", ORDERS), "order.place.reserve.action")
    check.validate(reserve_command())
    # Its payload is the command's own schema, not any object.
    without_lines = reserve_command(payload={"order_id": "A-1"})
    assert not check.is_valid(without_lines)
    assert not check.is_valid(reserve_command(payload={"order_id": "A-1", "lines": "many"}))
    assert not check.is_valid(reserve_command(command="Release"))
    assert not check.is_valid(reserve_command(service="payments"))
    assert not check.is_valid(reserve_command(kind="compensation"))


def test_a_reply_names_the_result_its_step_reads() -> None:
    check = message_check(document("--saga", ORDERS), "order.place.reserve.completed")
    reply = {
        "type": "TaskCompleted",
        "message_id": "m-1:reply",
        "saga_id": "A-1",
        "sent_at": "2026-01-01T00:00:00Z",
        "saga_name": "order.place",
        "step": "reserve",
        "attempt": 1,
        "kind": "action",
        "causation_id": "m-1",
        "result": {"hold_id": "h-1"},
    }
    check.validate(reply)
    assert not check.is_valid({**reply, "result": {}})
    assert not check.is_valid({**reply, "step": "charge"})


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--saga", "nowhere:saga"], "cannot import"),
        (["--saga", ORDERS], "--saga documents sagas in --asyncapi only"),
    ],
)
def test_mistakes_are_one_line(args: list[str], says: str) -> None:
    flags = ["--asyncapi"] if args[1] != ORDERS else ["--json-schema"]
    result = runner.invoke(app, ["contracts", *flags, *args])
    assert result.exit_code == 2
    assert says in result.output


class _Held(msgspec.Struct, frozen=True):
    seat: str


class _Freed(msgspec.Struct, frozen=True):
    seat: str


def _two_step_saga(send: Any) -> Any:
    builder = Saga("seats.hold", data=_Held)
    return builder.define(
        builder.step("hold", service="seats", send=send, undo=lambda d: _Freed(d.seat))
    )


def test_the_command_type_is_the_annotation_or_the_one_struct_named() -> None:
    def annotated(d: _Held) -> _Held:
        return d

    (step,) = saga_contract(_two_step_saga(annotated)).steps
    assert (step.command, step.undo) == (_Held, _Freed)
    (step,) = saga_contract(_two_step_saga(lambda d: _Held(d.seat))).steps
    assert step.command is _Held


def test_a_command_type_that_cannot_be_told_is_refused_with_the_fix() -> None:
    both = _two_step_saga(lambda d: _Held(d.seat) if d.seat else _Freed(d.seat))
    with pytest.raises(SagaDefinitionError, match=r"seats.hold.hold send=.*names _Freed, _Held"):
        saga_contract(both)
    built = _two_step_saga(lambda d: msgspec.convert({"seat": "1"}, type=type(d)))
    with pytest.raises(SagaDefinitionError, match=r"\(it names none\); annotate"):
        saga_contract(built)


def test_every_message_documents_the_trace_and_signature_headers() -> None:
    doc = document("--saga", ORDERS)
    for name, message in doc["components"]["messages"].items():
        assert set(message["headers"]["properties"]) == {
            "traceparent",
            "tracestate",
            "x-sig",
            "x-sig-ts",
        }, name
    # The names a signing transport really sets, and the recipe the document gives.
    headers = SigningTransport(
        MemoryTransport(),
        Keyring.of({"inventory:1": SECRET}),
        max_age=timedelta(days=1),
        clock=lambda: 7.0,
    ).sign("events", "reply.inventory.order.place.TaskCompleted", b"{}", "m-1")
    assert set(headers) == {"x-sig", "x-sig-ts"}
    described = doc["components"]["messages"]["Command"]["headers"]["properties"]["x-sig"]
    recipe = (
        b'saga-sig/v1\n["inventory:1","m-1",7,"events",'
        b'"reply.inventory.order.place.TaskCompleted","application/json"]\n{}'
    )
    assert (
        'b"saga-sig/v1\\n" + the compact JSON array [kid, message_id, x-sig-ts'
        in (described["description"])
    )
    mac = base64.b64encode(hmac.new(SECRET.encode(), recipe, hashlib.sha256).digest()).decode()
    assert headers["x-sig"] == f"v1,inventory:1,{mac}"
