"""Errors raised by the coordinator.

The tree, under the one root shared with the contracts package::

    SagaError
    ├── ContractError (ValueError)        a message could not be decoded or encoded
    ├── SagaDefinitionError (ValueError)  a saga definition is invalid; says what to fix
    ├── UnknownSagaError (LookupError)    no definition or instance by that name or id
    └── ConcurrencyError                  a saga changed under us (version conflict); retryable

Business failures of participants are not exceptions of the coordinator: they
arrive as ``TaskFailed`` replies and are part of a saga's normal life.
"""

from __future__ import annotations

from contracts import ContractError, SagaError

__all__ = [
    "ConcurrencyError",
    "ContractError",
    "SagaDefinitionError",
    "SagaError",
    "UnknownSagaError",
]


class SagaDefinitionError(SagaError, ValueError):
    """A saga definition is invalid. The message names the saga, the step and the fix."""


class UnknownSagaError(SagaError, LookupError):
    """No saga definition, or no saga instance, answers to that name or id."""


class ConcurrencyError(SagaError):
    """Another replica changed the saga first; reload and decide again."""

    retryable = True
