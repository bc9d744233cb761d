"""Errors raised by the coordinator, its client and its service processes.

They sit directly under ``SagaError``; the whole tree, with a line on when you
see each class and which are retryable, is drawn once, in the docstring of
``contracts._errors``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from contracts import ContractError, SagaError

__all__ = [
    "ConcurrencyError",
    "ContractError",
    "RequestRefusedError",
    "SagaDefinitionError",
    "SagaError",
    "SagaRefusedError",
    "SealedDataError",
    "ServerUnreachableError",
    "SettingsError",
    "StoreUnavailableError",
    "UnknownSagaError",
    "UnknownVersionError",
]


class SagaDefinitionError(SagaError, ValueError):
    """A saga definition is invalid. The message names the saga, the step and the fix."""


class SettingsError(SagaError, ValueError):
    """A setting (an ``SAGA_*`` or ``OTEL_*`` variable) cannot be used; the message names it."""


class SealedDataError(SagaError):
    """A sealed (encrypted) saga value cannot be opened: its key id is not in the
    keyring, or it does not authenticate (altered, or copied from another saga or
    field). Never retryable: the stored bytes will not change by themselves.

    Attributes:
        what: Where the value is (``saga id|data.field``); never the value.
    """

    def __init__(self, message: str, *, what: str) -> None:
        super().__init__(f"sealed value {what}: {message}")
        self.what = what


class UnknownSagaError(SagaError, LookupError):
    """No saga definition, or no saga instance, answers to that name or id."""


class UnknownVersionError(UnknownSagaError):
    """A saga runs on a definition version this coordinator was not given.

    A saga stays on the version it started with, so only a coordinator given
    that version can move it. A message for it is dead-lettered as
    ``unknown_version`` (and moved back when a coordinator with the version
    starts); ``saga run`` refuses to start without a version sagas are in
    flight on.

    Attributes:
        versions: The ``(name, version)`` pairs missing, sorted.
    """

    def __init__(self, message: str, versions: Iterable[tuple[str, int]]) -> None:
        super().__init__(message)
        self.versions = sorted(versions)


class SagaRefusedError(SagaError):
    """The saga itself turned a signal, cancel or retry down and stays as it was.

    Raised by ``Coordinator.signal``/``cancel``/``retry`` (in process): a signal
    whose data does not fit its wait or that no wait takes, a cancel past the
    pivot or of a finished saga, a retry with nothing failed. The refusal is in
    the saga's history too. Sending it again will not help.

    Attributes:
        saga_id: The saga addressed.
        reason: Why, as the history records it.
    """

    def __init__(self, saga_id: str, reason: str) -> None:
        super().__init__(f"saga {saga_id!r} refused it: {reason}")
        self.saga_id = saga_id
        self.reason = reason


class ConcurrencyError(SagaError):
    """Another replica changed the saga first; reload and decide again."""

    retryable = True


class UnroutableError(SagaError):
    """A message was published that no queue is bound to receive.

    The broker returned it (``basic.return``) to the ``mandatory`` publisher;
    dropping it would lose a command or a reply without a trace.
    """

    def __init__(self, exchange: str, routing_key: str) -> None:
        super().__init__(f"no queue is bound to {exchange!r} for routing key {routing_key!r}")
        self.exchange = exchange
        self.routing_key = routing_key


class WrongUserError(SagaError):
    """A message was published with a ``user_id`` that is not the connection's user.

    RabbitMQ refuses it (and closes the channel): a sender cannot claim another
    identity. Not retryable: publish with the connection's own user name, or none.
    """

    def __init__(self, user_id: str, user: str) -> None:
        super().__init__(
            f"user_id {user_id!r} is not the user this connection logged in as ({user!r}); "
            "publish with your own user name"
        )
        self.user_id = user_id
        self.user = user


class PublishFailedError(SagaError):
    """The broker did not take responsibility for a message.

    It may still have taken it (a lost or late confirm), so publishing it again
    can make a duplicate: consumers dedupe by message id.

    Attributes:
        reason: ``"nacked"`` (the broker refused it), ``"timeout"`` (no confirm in
            time, e.g. a connection that went silent) or ``"connection"`` (the
            channel or connection was closed).
    """

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        reason: Literal["nacked", "timeout", "connection"],
        message_id: str,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message_id = message_id


class StoreUnavailableError(SagaError):
    """The saga store cannot be reached (restarting, failing over, network).

    The runtime keeps the message it is handling and tries again with backoff,
    rather than spend the message's deliveries on an outage.
    """

    retryable = True


class ServerUnreachableError(SagaError, ConnectionError):
    """RabbitMQ or Redis did not answer at start-up within the patience given.

    The message names the server, its URL without the password, why it did
    not answer and the setting that points at it.
    """

    retryable = True

    def __init__(self, server: str, url: str, reason: str, setting: str) -> None:
        super().__init__(f"cannot reach {server} at {url} ({reason}); start it or set {setting}")
        self.server = server
        self.url = url
        self.reason = reason


class RequestRefusedError(SagaError):
    """An operator's request (``SagaClient``, the ``saga`` command line) did not happen.

    The saga or the coordinator refused it (see ``SagaRefusedError`` for the
    saga's own refusals, which this reports across the broker), the input does
    not fit the saga, no saga has that id, nothing receives it, or no
    coordinator answered within the accept timeout (the input then stays
    queued). The message says which and what to do; the CLI exits with 1.
    """
