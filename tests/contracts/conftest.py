"""Sample messages for the contract tests, as fixtures (no test imports this module)."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from contracts import (
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

SENT_AT = datetime(2024, 5, 17, 12, 30, 15, 250000, tzinfo=UTC)


def _command(**overrides: object) -> Command:
    fields: dict[str, object] = {
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
        "sent_at": SENT_AT,
        "deadline": SENT_AT + timedelta(seconds=30),
    }
    fields.update(overrides)
    return Command(**fields)  # type: ignore[arg-type]


def _all_messages() -> list[WireMessage]:
    """One fully populated instance of every wire message (no field left at its default)."""
    envelope = {
        "saga_id": "order-42",
        "saga_name": "place_order",
        "step": "reserve",
        "attempt": 2,
        "kind": "compensation",
        "causation_id": "order-42:reserve:compensation:2",
        "sent_at": SENT_AT,
    }
    return [
        _command(),
        TaskCompleted(message_id="r-1", result={"reservation": "res-9"}, **envelope),  # type: ignore[arg-type]
        TaskFailed(
            message_id="r-2",
            error_type="OutOfStock",
            error_message="only 1 left",
            retryable=False,
            **envelope,  # type: ignore[arg-type]
        ),
        StartSaga(
            message_id="start-1",
            saga_id="order-42",
            saga_name="place_order",
            input={"items": [{"sku": "A-1", "qty": 2}]},
            causation_id="http-req-7",
            sent_at=SENT_AT,
        ),
        Signal(
            message_id="sig-1",
            saga_id="order-42",
            name="approval",
            data={"by": "alice"},
            sent_at=SENT_AT,
        ),
        CancelSaga(
            message_id="c-1", saga_id="order-42", reason="customer gave up", sent_at=SENT_AT
        ),
        RetrySaga(message_id="r-1", saga_id="order-42", by="alice", sent_at=SENT_AT),
        PauseSaga(
            message_id="p-1", saga_id="order-42", by="alice", hold_deadline=True, sent_at=SENT_AT
        ),
        ResumeSaga(message_id="u-1", saga_id="order-42", by="bob", sent_at=SENT_AT),
        SagaLifecycle(
            message_id="l-1",
            saga_id="order-42",
            saga_name="place_order",
            saga_version=3,
            event="compensated",
            reason="payment declined",
            data={"refund": 12.5},
            sent_at=SENT_AT,
        ),
    ]


@pytest.fixture(params=_all_messages(), ids=lambda msg: type(msg).__name__)
def any_message(request: pytest.FixtureRequest) -> WireMessage:
    message: WireMessage = request.param
    return message


@pytest.fixture
def make_command() -> Callable[..., Command]:
    """Builds a fully populated command; keyword arguments override fields."""
    return _command


@pytest.fixture
def all_messages() -> list[WireMessage]:
    return _all_messages()
