"""Definition versions at a coordinator's start: the sagas in flight must find theirs.

A saga stays on the definition version it started with; only a coordinator
given that version moves it. So a coordinator refuses to start when sagas are
in flight on a version it was not given (the store counts them from its
index, once, at start: the commit of each transition is unchanged). A message
for a saga whose version a replica does not have (one started by a replica
with more versions, during a rolling deploy) is dead-lettered as
``unknown_version``; a coordinator that starts with that version moves those
letters back to the events queue, where it takes them.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence

from contracts import Codec, ContractError, routes
from coordinator._errors import UnknownVersionError
from coordinator.ports import DeadLetter, DeadLetters, SagaStore, SagaVersions, pinned
from coordinator.runtime._registry import Registry

__all__ = ["UNKNOWN_VERSION", "check_versions", "redrive_loaded"]

UNKNOWN_VERSION = "unknown_version"
"""The dead-letter reason of a message for a saga on a version not loaded."""

_log = logging.getLogger("coordinator")

# Dead letters read to find those a starting coordinator can now take.
_SNAPSHOT = 10_000


async def check_versions(store: SagaVersions, loaded: Collection[tuple[str, int]]) -> None:
    """Raise when sagas are in flight on a definition version not in ``loaded``.

    Raises:
        UnknownVersionError: names each missing ``name vN`` and how many sagas
            run on it, in one line.
    """
    in_flight: Mapping[tuple[str, int], int] = await store.versions_in_flight()
    missing = sorted(set(in_flight) - set(loaded))
    if not missing:
        return
    listed = ", ".join(
        f"{name} v{version} ({in_flight[(name, version)]} sagas)" for name, version in missing
    )
    raise UnknownVersionError(
        f"sagas are in flight on definitions this coordinator was not given: {listed}; "
        "a saga stays on its version: give the coordinator each of them too (saga run "
        "--saga, next to the new one) until their sagas have ended",
        missing,
    )


def _sagas(count: int) -> str:
    return f"{count} saga" + ("" if count == 1 else "s")


async def redrive_loaded(
    dead_letters: DeadLetters, store: SagaStore, codec: Codec, registry: Registry
) -> Sequence[DeadLetter]:
    """Move back to the events queue the ``unknown_version`` dead letters whose
    saga runs on a version of ``registry``; returns those moved.

    Each letter's saga is read from the store to know its version: a letter for
    another version stays where it is, for a coordinator that has it.
    """
    wanted: list[str] = []
    for letter in await dead_letters.list(routes.EVENTS_QUEUE, _SNAPSHOT):
        if letter.reason != UNKNOWN_VERSION:
            continue
        try:
            saga_id = codec.decode_inbound(letter.body).saga_id
        except ContractError:
            continue
        stored = await store.load(saga_id)
        if stored is None:  # ended and expired since: nothing will take it
            continue
        if pinned(stored.state) in registry.versions:
            wanted.append(letter.message_id)
    if not wanted:
        return []
    moved = await dead_letters.redrive(routes.EVENTS_QUEUE, wanted, limit=len(wanted))
    _log.info("moved %d %s dead letters back to the events queue", len(moved), UNKNOWN_VERSION)
    return moved
