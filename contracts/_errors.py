"""Every error saga-coordinator raises on purpose, under one root, drawn once here.

The root lives in ``contracts`` because the coordinator and the participants
both depend on this package and on nothing of each other; catching
``SagaError`` catches everything the project raises on purpose. Each class says
when you see it; ``retryable`` says whether the same call may succeed later::

    SagaError                            retryable = False unless a class says otherwise
    ├── ContractError (ValueError)       a message could not be decoded or encoded: dead-letter it
    │
    │   coordinator (coordinator._errors)
    ├── SagaDefinitionError (ValueError) a saga definition is invalid; says what to fix
    ├── UnknownSagaError (LookupError)   no saga definition, or no saga, by that name or id
    │   └── UnknownVersionError          the saga runs on a definition version not loaded here
    ├── SagaRefusedError                 the saga turned a signal, cancel or retry down
    ├── SealedDataError                  a sealed (encrypted) value does not open: altered,
    │                                    moved, or its key is not in the keyring
    ├── RequestRefusedError              an operator's request did not happen (refused, no answer)
    ├── ConcurrencyError                 another replica changed the saga first; retryable
    ├── StoreUnavailableError            the saga store cannot be reached now; retryable
    ├── ServerUnreachableError (ConnectionError)
    │                                    RabbitMQ or Redis did not answer at start-up; retryable
    ├── UnroutableError                  a mandatory message no queue is bound to receive
    ├── PublishFailedError               the broker did not confirm a message; retryable
    ├── WrongUserError                   a message's user_id is not the connection's user
    ├── TopologyMismatchError            a queue or exchange exists with other arguments
    │                                    (coordinator.adapters.rabbitmq)
    │
    │   participants (participants._errors)
    ├── Failure                          a handler could not perform its command: a TaskFailed
    │                                    reply (retryable unless the handler says otherwise)
    └── ServiceDefinitionError (ValueError)
                                         a service is declared wrongly; says what to fix

Business failures of participants are not errors of the coordinator: they
arrive as ``TaskFailed`` replies and are part of a saga's normal life.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

ContractErrorReason: TypeAlias = Literal[
    "malformed_json", "schema_mismatch", "too_large", "unknown_type"
]


class SagaError(Exception):
    """Root of every error raised by saga-coordinator; the tree is in this module's docstring.

    Attributes:
        retryable: Whether the same call may succeed if made again later (an
            outage, a conflict), so a generic handler needs no ``getattr``. False
            here; the classes that are retryable say so. A class attribute that
            an instance may override (``participants.Failure(retryable=...)``).
    """

    retryable: bool = False


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
