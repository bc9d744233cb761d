"""Service declarations and the Failure exception."""

from __future__ import annotations

import functools
from datetime import UTC, datetime

import msgspec
import pytest

import participants
from contracts import Command, SagaError
from coordinator.adapters.memory._idempotency import MemoryIdempotencyStore
from coordinator.adapters.memory._transport import MemoryTransport
from participants._errors import Failure, ServiceDefinitionError
from participants._service import Context, Service
from participants._worker import ParticipantWorker


class Reserve(msgspec.Struct):
    sku: str


class Reserved(msgspec.Struct):
    hold_id: str


def test_the_handler_is_registered_and_returned_unchanged() -> None:
    service = Service("inventory")

    async def reserve(cmd: Reserve, ctx: Context) -> Reserved:
        return Reserved(hold_id=cmd.sku)

    assert service.handles(Reserve)(reserve) is reserve
    registration = service.handler_for("Reserve")
    assert registration is not None
    assert (registration.name, registration.command_type, registration.handler) == (
        "Reserve",
        Reserve,
        reserve,
    )
    assert service.commands == ("Reserve",)
    assert service.handler_for("Release") is None
    assert service.name == "inventory"
    assert "Reserve" in repr(service)


def test_a_command_has_one_handler() -> None:
    service = Service("inventory")

    @service.handles(Reserve)
    async def reserve(cmd: Reserve, ctx: Context) -> None: ...

    with pytest.raises(ServiceDefinitionError, match="already has a handler for 'Reserve'"):

        @service.handles(Reserve)
        async def reserve_again(cmd: Reserve, ctx: Context) -> None: ...

    # Two decorators made before either was applied: the second application fails.
    other = Service("other")
    first, second = other.handles(Reserve), other.handles(Reserve)
    first(reserve)
    with pytest.raises(ServiceDefinitionError, match="already has a handler"):
        second(reserve)


def test_a_command_must_be_a_struct_class() -> None:
    service = Service("inventory")
    with pytest.raises(ServiceDefinitionError, match="msgspec Struct class"):
        service.handles(dict)  # type: ignore[type-var]
    with pytest.raises(ServiceDefinitionError, match="msgspec Struct class"):
        service.handles(Reserve(sku="x"))  # type: ignore[arg-type]


def test_a_handler_must_be_async() -> None:
    service = Service("inventory")

    def reserve(cmd: Reserve, ctx: Context) -> None: ...

    with pytest.raises(ServiceDefinitionError, match="async"):
        service.handles(Reserve)(reserve)  # type: ignore[arg-type]
    assert service.commands == ()


def test_async_callables_of_other_shapes_are_accepted() -> None:
    async def reserve(cmd: Reserve, ctx: Context, *, flag: bool) -> None: ...

    class Handler:
        async def __call__(self, cmd: Reserve, ctx: Context) -> None: ...

    partial, instance = functools.partial(reserve, flag=True), Handler()
    a, b = Service("a"), Service("b")
    a.handles(Reserve)(partial)
    b.handles(Reserve)(instance)
    assert a.commands == b.commands == ("Reserve",)
    registered_a, registered_b = a.handler_for("Reserve"), b.handler_for("Reserve")
    assert registered_a is not None and registered_a.handler is partial
    assert registered_b is not None and registered_b.handler is instance


@pytest.mark.parametrize("name", ["", "in.ventory", "inv*", "#", "in ventory"])
def test_a_service_name_is_one_routing_key_word(name: str) -> None:
    with pytest.raises(ServiceDefinitionError, match="service name"):
        Service(name)


async def test_a_worker_needs_a_handler() -> None:
    worker = ParticipantWorker(
        Service("empty"), transport=MemoryTransport(), idempotency=MemoryIdempotencyStore()
    )
    with pytest.raises(ServiceDefinitionError, match="handles no command"):
        await worker.start()


def test_context_from_command() -> None:
    sent_at = datetime(2026, 1, 1, tzinfo=UTC)
    cmd = Command(
        message_id="s:reserve:compensation:2",
        idempotency_key="s:reserve:compensation",
        saga_id="s",
        saga_name="place_order",
        saga_version=4,
        step="reserve",
        attempt=2,
        kind="compensation",
        service="inventory",
        command="Release",
        payload={},
        sent_at=sent_at,
        deadline=sent_at,
    )
    ctx = Context.from_command(cmd)
    assert (ctx.saga_version, ctx.kind, ctx.attempt, ctx.deadline) == (
        4,
        "compensation",
        2,
        sent_at,
    )


class CardDeclined(Failure):
    retryable = False


class Throttled(Failure):
    error_type = "RateLimited"


def test_failure_with_a_type_and_a_message() -> None:
    failure = Failure("OutOfStock", "sku A-1 is out of stock", retryable=False)
    assert (failure.error_type, failure.message, failure.retryable) == (
        "OutOfStock",
        "sku A-1 is out of stock",
        False,
    )
    assert str(failure) == "sku A-1 is out of stock"
    assert isinstance(failure, SagaError)
    assert repr(failure) == "Failure('OutOfStock', 'sku A-1 is out of stock', retryable=False)"


def test_failure_defaults() -> None:
    failure = Failure("something broke")
    assert (failure.error_type, failure.message, failure.retryable) == (
        "Failure",
        "something broke",
        True,
    )


def test_failure_subclasses_set_type_and_retryability() -> None:
    declined = CardDeclined("card ending 4242 was declined")
    assert (declined.error_type, declined.message, declined.retryable) == (
        "CardDeclined",
        "card ending 4242 was declined",
        False,
    )
    assert CardDeclined("x", retryable=True).retryable is True
    assert CardDeclined.retryable is False  # an instance override leaves the class alone
    assert Throttled("slow down").error_type == "RateLimited"
    assert CardDeclined("Fraud", "flagged").error_type == "Fraud"


def test_public_names() -> None:
    assert set(participants.__all__) == {
        "ALREADY_COMPENSATED",
        "INVALID_COMMAND",
        "CommandHandler",
        "Context",
        "EndToEndKeys",
        "Failure",
        "ParticipantWorker",
        "Registration",
        "Service",
        "ServiceDefinitionError",
        "serve_participants",
    }
    for name in participants.__all__:
        assert getattr(participants, name) is not None
