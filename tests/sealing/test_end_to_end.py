"""A field encrypted end to end (``contracts.Encrypted``): the client encrypts it, the
coordinator stores and forwards the ciphertext without a key for it, the participant
decrypts it. Runs in the harness (the memory adapters)."""

from __future__ import annotations

import base64
import os

import msgspec
import pytest

from contracts import Encrypted
from coordinator import Saga, SealedDataError, SettingsError
from coordinator.testing import Harness
from participants import Context, EndToEndKeys, Service

KEYS = EndToEndKeys.parse(f"pii-2026-12:{base64.b64encode(os.urandom(32)).decode()}")
CARD = "4111 1111 1111 1111"


class Order(msgspec.Struct):
    order_id: str
    card: Encrypted


class Charge(msgspec.Struct):
    order_id: str
    card: Encrypted


def saga_and_payments() -> tuple[object, Service, list[str]]:
    saga = Saga("e2e.order", data=Order)
    definition = saga.define(
        saga.step(
            "charge",
            service="payments",
            send=lambda o: Charge(order_id=o.order_id, card=o.card),
            pivot=True,
        )
    )
    payments, received = Service("payments"), []

    @payments.handles(Charge)
    async def charge(cmd: Charge, ctx: Context) -> None:
        received.append(KEYS.decrypt(cmd.card, context="Order.card"))

    return definition, payments, received


async def test_the_coordinator_forwards_ciphertext_the_participant_decrypts() -> None:
    definition, payments, received = saga_and_payments()
    sealed = KEYS.encrypt(CARD, context="Order.card")  # by the client starting the saga
    async with Harness([definition], [payments]) as h:  # type: ignore[list-item]
        await h.coordinator.start_saga("e2e.order", "o1", {"order_id": "o1", "card": sealed})
        state = await h.run_until_done("o1")
        assert state.status == "completed"
        assert received == [CARD]
        stored = await h.store.load("o1")
        history = [msgspec.json.encode(e) for e in await h.history("o1")]
    assert stored is not None and CARD.encode() not in stored.state
    assert sealed.encode() in stored.state  # the ciphertext, as the client made it
    assert not any(CARD.encode() in line for line in history)


async def test_a_clear_value_where_ciphertext_is_expected_is_refused() -> None:
    definition, payments, _ = saga_and_payments()
    async with Harness([definition], [payments]) as h:  # type: ignore[list-item]
        with pytest.raises(msgspec.ValidationError, match="card"):
            await h.coordinator.start_saga("e2e.order", "o2", {"order_id": "o2", "card": CARD})


def test_the_context_binds_the_value_and_bad_keys_are_one_line() -> None:
    sealed = KEYS.encrypt(CARD, context="Order.card")
    with pytest.raises(SealedDataError, match="does not authenticate"):
        KEYS.decrypt(sealed, context="Order.email")
    with pytest.raises(SealedDataError, match="not a sealed value"):
        KEYS.decrypt(CARD, context="Order.card")
    with pytest.raises(SettingsError, match="PAYMENTS_E2E_KEYS: key 'k' is 3 bytes"):
        EndToEndKeys.parse("k:YWJj", setting="PAYMENTS_E2E_KEYS")


def test_the_contract_schema_marks_the_field() -> None:
    schema = msgspec.json.schema(Charge)["$defs"]["Charge"]["properties"]["card"]
    assert schema["x-encrypted"] is True and schema["pattern"].startswith("^e2e:v1:")
