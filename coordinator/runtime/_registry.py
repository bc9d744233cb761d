"""The saga definitions a coordinator runs, by name and version, how a stored state
is decoded into the ``SagaState`` of its own definition's data type, and the check
that a definition marking data sensitive has a key to seal it with."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, final

import msgspec

from coordinator._dsl import sensitive_of
from coordinator._errors import SettingsError, UnknownSagaError, UnknownVersionError
from coordinator._sealing import Keyring
from coordinator.core import SagaDefinition, SagaState
from coordinator.ports import pinned

__all__ = ["Registry", "check_keys", "state_type"]


@final
class Registry:
    """Every definition still in flight, by ``(name, version)``; a start takes the latest."""

    def __init__(self, definitions: Iterable[SagaDefinition[Any]]) -> None:
        self._by_version: dict[tuple[str, int], SagaDefinition[Any]] = {}
        self._latest: dict[str, SagaDefinition[Any]] = {}
        for d in definitions:
            self._by_version[(d.name, d.version)] = d
            if d.name not in self._latest or self._latest[d.name].version < d.version:
                self._latest[d.name] = d
        # With a single definition (the common case) a state decodes in one pass,
        # without reading its name and version first.
        self._single = next(iter(self._by_version.values())) if len(self._by_version) == 1 else None
        self._single_decoder = msgspec.json.Decoder(state_type(self._single))

    @property
    def services(self) -> frozenset[str]:
        """The participant services the definitions send commands to."""
        return frozenset(
            step.service for d in self._by_version.values() for step in d.steps.values()
        )

    def latest(self, name: str) -> SagaDefinition[Any]:
        """The newest version of ``name``: the one new sagas start on.

        Raises:
            UnknownSagaError: no definition is called ``name``.
        """
        found = self._latest.get(name)
        if found is None:
            known = ", ".join(sorted(self._latest)) or "none"
            raise UnknownSagaError(f"no saga definition named {name!r} (known: {known})")
        return found

    @property
    def versions(self) -> frozenset[tuple[str, int]]:
        """Every ``(name, version)`` registered."""
        return frozenset(self._by_version)

    def definition(self, name: str, version: int | None = None) -> SagaDefinition[Any]:
        """``name`` at ``version`` (the latest when None).

        Raises:
            UnknownSagaError: no definition is called ``name`` (``version`` None).
            UnknownVersionError: ``version`` of ``name`` is not registered: a saga
                on it stays there, for a coordinator that has it.
        """
        if version is None:
            return self.latest(name)
        found = self._by_version.get((name, version))
        if found is None:
            loaded = sorted(v for n, v in self._by_version if n == name)
            raise UnknownVersionError(
                f"saga definition {name!r} v{version} is not loaded here (loaded: "
                + (", ".join(f"v{v}" for v in loaded) if loaded else "none of that name")
                + ")",
                [(name, version)],
            )
        return found

    def decode(self, stored: bytes) -> SagaState[Any]:
        """A stored state, its data decoded into its definition's data type.

        Raises:
            UnknownVersionError: the state's definition (name and version) is not registered.
        """
        if self._single is not None:
            state: SagaState[Any] | None
            try:
                state = self._single_decoder.decode(stored)
            except msgspec.ValidationError:
                state = None  # another version's data: its version tells
            if state is not None and (state.name, state.version) == (
                self._single.name,
                self._single.version,
            ):
                return state
        definition = self.definition(*pinned(stored))
        decoded: SagaState[Any] = msgspec.json.decode(stored, type=state_type(definition))
        return decoded


def state_type(definition: SagaDefinition[Any] | None) -> Any:
    """``SagaState[data type]`` of a definition (``SagaState[Any]`` for None), for msgspec."""
    return SagaState[definition.data_type] if definition else SagaState[Any]  # type: ignore[name-defined]


def check_keys(definitions: Iterable[SagaDefinition[Any]], keyring: Keyring | None) -> None:
    """Refuse definitions that mark data sensitive when there is no key to seal it with.

    Raises:
        SettingsError: naming the sagas and the setting to set.
    """
    marked = sorted({f"{d.name!r} v{d.version}" for d in definitions if sensitive_of(d)})
    if marked and keyring is None:
        raise SettingsError(
            f"saga {', '.join(marked)} marks data fields sensitive and no key is configured: "
            "set SAGA_DATA_KEYS (or SAGA_DATA_KEYS_FILE) to KID:BASE64KEY"
        )
