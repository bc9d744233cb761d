"""A saga with sealed data replays as recorded once its history is opened with the keys
(what ``saga replay`` does with ``SAGA_DATA_KEYS``); sealed, it does not."""

from __future__ import annotations

from pii_support import Seen, definition, secrets, services

from coordinator._sealing import Sealer
from coordinator.replay import replay
from coordinator.testing import Harness


async def test_an_opened_history_replays_as_recorded() -> None:
    card, email = secrets()
    pay = definition()
    async with Harness([pay], services(Seen())) as h:
        await h.coordinator.start_saga(
            "pii.pay", "r1", {"order_id": "r1", "card": card, "email": email}
        )
        assert (await h.run_until_done("r1")).status == "completed"
        entries = list(await h.history("r1"))
        stored = await h.store.load("r1")
        keys = h.keyring
    assert stored is not None and keys is not None
    sealer = Sealer(keys, {})
    opened = replay(
        pay, [sealer.open_entry(e, "r1") for e in entries], sealer.open_state(stored.state)
    )
    assert opened.divergence is None, opened.divergence
    # The same history, sealed: the builders see ciphertext, and the replay says it differs.
    assert replay(pay, entries, stored.state).divergence is not None
