"""Replay and export for an operator: sagas read through the client, replayed
against definitions (``coordinator.replay``), or written out before they expire.

Which definition a saga replays against, of those given: the one with its name
and version, when given (the code it runs on now, which may have been edited
in place since); otherwise the newest version given of its name (a new
version: would it have decided the same?). A saga is never replayed against a
definition of another name.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime
from typing import Any

from coordinator._errors import RequestRefusedError
from coordinator._sealing import Keyring, Sealer
from coordinator.client._client import SagaClient, as_json
from coordinator.core import SagaDefinition
from coordinator.ports import pinned
from coordinator.replay import Replayed, entry_json, replay

__all__ = ["export_finished", "pick_definition", "replay_saga", "saga_ids"]

# A ``limit`` that means every saga the index holds.
_ALL = 2**31


# Sagas read at once by an export: a few round trips in flight, a bounded memory.
_EXPORT_BATCH = 64


def pick_definition(
    definitions: Iterable[SagaDefinition[Any]], name: str, version: int
) -> SagaDefinition[Any] | None:
    """The definition a saga of ``name`` at ``version`` replays against: that
    version if given, else the newest given of ``name``; None if none is called so."""
    named = [d for d in definitions if d.name == name]
    exact = next((d for d in named if d.version == version), None)
    return exact or max(named, key=lambda d: d.version, default=None)


async def saga_ids(client: SagaClient, name: str, status: str | None = None) -> list[str]:
    """The ids of every saga of ``name`` (in ``status``, if given), newest change first."""
    return list(await client.store.find(name=name, status=status, limit=_ALL))


async def replay_saga(
    client: SagaClient,
    saga_id: str,
    definitions: Sequence[SagaDefinition[Any]],
    *,
    keys: Keyring | None = None,
) -> Replayed:
    """Replay one saga's history against the definition ``pick_definition`` picks.

    ``keys`` open sensitive values (``SAGA_DATA_KEYS``): the definition's builders
    and conditions run on clear data, as they did. Without them a sealed value
    makes the replay fail with ``SealedDataError``.

    Raises:
        RequestRefusedError: no saga has that id, or no definition given has its name.
    """
    stored, entries = await asyncio.gather(client.store.load(saga_id), client.history(saga_id))
    if stored is None or not entries:
        raise RequestRefusedError(f"no saga with id {saga_id} in namespace {client.namespace!r}")
    name, version = pinned(stored.state)
    definition = pick_definition(definitions, name, version)
    if definition is None:
        given = ", ".join(sorted({d.key for d in definitions})) or "none"
        raise RequestRefusedError(
            f"saga {saga_id} runs on {name} v{version}, and no definition given "
            f"is called {name!r} (given: {given})"
        )
    sealer = Sealer(keys, {})
    entries = [sealer.open_entry(e, saga_id) for e in entries]
    return replay(definition, entries, sealer.open_state(stored.state))


async def export_finished(
    client: SagaClient, since: datetime, *, names: Iterable[str] | None = None
) -> AsyncIterator[dict[str, Any]]:
    """Each saga that ended at ``since`` or later, oldest first, as a JSON object:
    ``saga_id``, ``finished_at`` (the store's clock), ``state`` and ``history``,
    with every field. A saga that expires while the export runs is left out."""
    found = await client.store.finished(since, names=None if names is None else set(names))
    for start in range(0, len(found), _EXPORT_BATCH):
        batch = found[start : start + _EXPORT_BATCH]
        read = await asyncio.gather(*(_exported(client, sid, at) for sid, at in batch))
        for exported in read:
            if exported is not None:
                yield exported


async def _exported(client: SagaClient, saga_id: str, at: datetime) -> dict[str, Any] | None:
    state, entries = await asyncio.gather(client.state(saga_id), client.history(saga_id))
    if state is None:
        return None
    return {
        "saga_id": saga_id,
        "finished_at": as_json(at),
        "state": as_json(state),
        "history": [entry_json(e) for e in entries],
    }
