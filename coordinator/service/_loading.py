"""Finding saga definitions and participant services named ``module:attribute``."""

from __future__ import annotations

import pkgutil
import sys
from pathlib import Path
from typing import Any

from coordinator._dsl import Saga
from coordinator._errors import UnknownSagaError
from coordinator.core import SagaDefinition

__all__ = ["load_definition", "load_object"]


def load_object(spec: str) -> object:
    """Import ``package.module:attribute`` (the current directory is importable).

    Raises:
        UnknownSagaError: ``spec`` is not ``MODULE:ATTRIBUTE``, the module cannot be
            imported, or it has no such attribute; the message says which.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UnknownSagaError(f"{spec!r}: expected MODULE:ATTRIBUTE, e.g. orders.sagas:saga")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return pkgutil.resolve_name(spec)
    except ModuleNotFoundError as exc:
        raise UnknownSagaError(f"{spec!r}: cannot import {module_name!r} ({exc})") from exc
    except AttributeError as exc:
        raise UnknownSagaError(f"{spec!r}: module {module_name!r} has no {attr!r}") from exc
    except ValueError as exc:  # resolve_name's own check of the format
        raise UnknownSagaError(f"{spec!r}: expected MODULE:ATTRIBUTE ({exc})") from exc


def load_definition(spec: str) -> SagaDefinition[Any]:
    """The saga definition at ``spec``: a definition, or a builder that defined one."""
    found = load_object(spec)
    if isinstance(found, Saga):
        found = found.definition
    if not isinstance(found, SagaDefinition):
        raise UnknownSagaError(f"{spec!r} is {type(found).__name__}, not a saga definition")
    return found
