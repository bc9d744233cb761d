"""Errors of the participant SDK: ``Failure`` and ``ServiceDefinitionError``.

They sit directly under ``SagaError``; the whole tree is drawn once, in the
docstring of ``contracts._errors``.
"""

from __future__ import annotations

from typing import overload

from contracts import SagaError

__all__ = ["Failure", "ServiceDefinitionError"]


class Failure(SagaError):
    """Raised by a handler that could not perform its command and applied nothing.

    The worker answers the command with a ``TaskFailed`` carrying
    ``error_type``, the message and ``retryable``. Raise it directly with a
    type, or declare a subclass whose name is the type::

        raise Failure("OutOfStock", "sku A-1 is out of stock", retryable=False)

        class CardDeclined(Failure):
            retryable = False

        raise CardDeclined("card ending 4242 was declined")

    Any other exception a handler raises also becomes a ``TaskFailed``, named
    after its class and retryable: it is taken for a transient fault.

    Attributes:
        error_type: A stable name retry policies match on; a subclass's name
            unless it sets its own.
        message: What went wrong, for a human.
        retryable: False when trying again cannot help (e.g. a business rule
            refused); the coordinator then skips its retries. True by default.
    """

    error_type: str = "Failure"
    retryable: bool = True
    message: str

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        if "error_type" not in cls.__dict__:
            cls.error_type = cls.__name__

    @overload
    def __init__(self, message: str, /, *, retryable: bool | None = None) -> None: ...

    @overload
    def __init__(
        self, error_type: str, message: str, /, *, retryable: bool | None = None
    ) -> None: ...

    def __init__(
        self, first: str, message: str | None = None, /, *, retryable: bool | None = None
    ) -> None:
        """Create a failure.

        Args:
            first: The message; or, when a message follows, the error type.
            message: The message, when the first argument is the error type.
            retryable: Overrides the class's ``retryable``.
        """
        if message is None:
            message = first
        else:
            self.error_type = first
        super().__init__(message)
        self.message = message
        if retryable is not None:
            self.retryable = retryable

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.error_type!r}, {self.message!r}, "
            f"retryable={self.retryable})"
        )


class ServiceDefinitionError(SagaError, ValueError):
    """A service or one of its handlers is declared wrongly; the message says how to fix it."""
