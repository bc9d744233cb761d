"""The error root shared by the coordinator, the participants and the contracts."""

from __future__ import annotations

from typing import Literal, TypeAlias

ContractErrorReason: TypeAlias = Literal[
    "malformed_json", "schema_mismatch", "too_large", "unknown_type"
]


class SagaError(Exception):
    """Root of every error raised by saga-coordinator.

    It lives in ``contracts`` because both the coordinator and the participants
    depend on this package and on nothing of each other; catching ``SagaError``
    catches everything the project raises on purpose. The tree stays shallow::

        SagaError
        └── ContractError (also a ValueError)  a message could not be decoded or encoded

    The coordinator adds its own subclasses directly under ``SagaError``.
    """


class ContractError(SagaError, ValueError):
    """A message could not be decoded or encoded.

    The same bytes fail the same way every time, so a consumer should not
    retry them: it rejects the delivery to the dead-letter queue and puts
    ``reason`` and ``message`` in its headers.

    Attributes:
        reason: A short machine code: ``"malformed_json"`` (not JSON at all),
            ``"schema_mismatch"`` (JSON, but not the expected message; the
            message names the path, e.g. ``$.attempt``), ``"too_large"`` (over
            the codec's size limit) or ``"unknown_type"`` (a ``type`` tag this
            decoder does not accept).
        message: What was wrong, for a human.
    """

    reason: ContractErrorReason
    message: str

    def __init__(self, message: str, *, reason: ContractErrorReason) -> None:
        """Create the error.

        Args:
            message: What was wrong, for a human.
            reason: The machine code, one of the values listed on the class.
        """
        super().__init__(message)
        self.reason = reason
        self.message = message
