"""What ``saga contracts --asyncapi --saga ...`` says of a saga: the types of its messages.

A step's ``send=`` and ``undo=`` build their command from the saga data, so the
definition holds no command type. It is the builder's return annotation when it
has one, else the one ``msgspec.Struct`` the builder names (``lambda o:
Reserve(...)`` names ``Reserve``); a builder that names none or several must
annotate its return type, and the command says so.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

import msgspec

from contracts import SagaContract, StepContract
from coordinator._errors import SagaDefinitionError
from coordinator.core import SagaDefinition

__all__ = ["saga_contract"]


def saga_contract(definition: SagaDefinition[Any]) -> SagaContract:
    """The steps, command types and signals of ``definition``.

    Raises:
        SagaDefinitionError: a step's command type cannot be told; the message names it.
    """
    steps = tuple(
        StepContract(
            step=step.name,
            service=step.service,
            command=_command_type(step.send, f"{definition.name}.{step.name} send="),
            undo=_command_type(step.undo, f"{definition.name}.{step.name} undo=")
            if step.undo is not None
            else None,
            result=step.result_type,
        )
        for step in definition.steps.values()
    )
    signals = tuple((wait.signal, wait.data_type) for wait in definition.waits.values())
    return SagaContract(name=definition.name, steps=steps, signals=signals)


def _is_command(candidate: object) -> bool:
    return isinstance(candidate, type) and issubclass(candidate, msgspec.Struct)


def _command_type(build: Callable[..., object], where: str) -> type:
    try:
        returned = typing.get_type_hints(build).get("return")
    except (NameError, TypeError):  # an annotation that does not resolve: look at the code
        returned = None
    if _is_command(returned):
        return typing.cast(type, returned)
    try:
        named = inspect.getclosurevars(build)
    except TypeError:  # not a Python function (a callable object, a builtin)
        named = None
    found = (
        {v for v in (*named.nonlocals.values(), *named.globals.values()) if _is_command(v)}
        if named is not None
        else set()
    )
    if len(found) == 1:
        return typing.cast(type, found.pop())
    seen = f"it names {', '.join(sorted(t.__name__ for t in found))}" if found else "it names none"
    raise SagaDefinitionError(
        f"{where}: cannot tell which msgspec.Struct the command is ({seen}); "
        "annotate the builder's return type (def build(o: Order) -> Reserve: ...)"
    )
