"""Show public names under the package that exports them, as httpx does.

A class defined in ``coordinator.client._client`` and exported by
``coordinator.client`` should say ``coordinator.client.SagaClient`` in reprs,
tracebacks and docs, not the private module. This helper serves the three
packages of the distribution; it lives here because ``contracts`` is the one
package the other two may both import.

Two kinds of class keep their ``__module__``: msgspec Structs and dataclasses
(and a pydantic model not yet complete), because msgspec resolves a class's postponed
annotations in the module that ``__module__`` names, and a rewritten one would
not hold the private names they refer to (a generic ``SagaState[Order]`` is
resolved long after import).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterable, MutableMapping

import msgspec

__all__ = ["show_as_public"]


def show_as_public(
    package: str, namespace: MutableMapping[str, object], names: Iterable[str]
) -> None:
    """Set ``__module__`` to ``package`` on the exported classes and functions it defines.

    Args:
        package: The exporting package's ``__name__``.
        namespace: Its ``globals()``.
        names: Its ``__all__``.
    """
    private = f"{package}._"
    for name in names:
        obj = namespace[name]
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if not getattr(obj, "__module__", "").startswith(private) or _annotations_resolved_late(
            obj
        ):
            continue
        obj.__module__ = package


def _annotations_resolved_late(obj: object) -> bool:
    if not inspect.isclass(obj):
        return False
    if issubclass(obj, msgspec.Struct) or dataclasses.is_dataclass(obj):
        return True
    # A pydantic model resolves its annotations when it is created; one that
    # could not yet (a forward reference) resolves them later, by module.
    pydantic = any(base.__module__.startswith("pydantic") for base in obj.__mro__)
    return pydantic and not getattr(obj, "__pydantic_complete__", False)
