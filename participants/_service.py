"""A participant service: its name and the handler of each command it accepts."""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar, final

import msgspec

from contracts import Command, StepKind
from participants._errors import ServiceDefinitionError

if TYPE_CHECKING:
    from coordinator.ports import Clock, IdempotencyStore, Transport
    from participants._worker import ParticipantWorker

__all__ = ["CommandHandler", "Context", "Registration", "Service"]

C = TypeVar("C", bound=msgspec.Struct)
R = TypeVar("R", bound=msgspec.Struct | Mapping[str, Any] | None)

# A service name is one word of a routing key: ``{service}.{command}``.
_SERVICE_NAME: Final = re.compile(r"[^.*#\s]+")


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """The envelope of the command a handler is running for.

    Attributes:
        saga_id: The saga instance; a natural key for the handler's own records.
        saga_name: The saga definition's name.
        saga_version: The definition's version the saga runs on.
        step: The step's name within the saga.
        attempt: 1 for the first try, incremented by each retry.
        kind: ``"action"`` to perform the step, ``"compensation"`` to undo it.
        message_id: This attempt's unique id.
        idempotency_key: The same for every attempt of the step; the worker
            already dedupes by it, and a handler's own storage can too.
        deadline: When the coordinator stops waiting for the reply, if it will.
    """

    saga_id: str
    saga_name: str
    saga_version: int
    step: str
    attempt: int
    kind: StepKind
    message_id: str
    idempotency_key: str
    deadline: datetime | None = None

    @classmethod
    def from_command(cls, command: Command) -> Context:
        """The context of ``command``, e.g. to call a handler directly in a test."""
        return cls(
            saga_id=command.saga_id,
            saga_name=command.saga_name,
            saga_version=command.saga_version,
            step=command.step,
            attempt=command.attempt,
            kind=command.kind,
            message_id=command.message_id,
            idempotency_key=command.idempotency_key,
            deadline=command.deadline,
        )


CommandHandler: TypeAlias = Callable[[C, Context], Coroutine[Any, Any, R]]
"""``async def handler(command: C, ctx: Context) -> R``, where ``R`` is a msgspec
Struct, a JSON object (``dict``) or ``None``; the reply's ``result`` is that
value as a JSON object (``{}`` for ``None``)."""


@final
@dataclass(frozen=True, slots=True)
class Registration:
    """A command type and its handler, as registered on a `Service`."""

    name: str
    command_type: type[msgspec.Struct]
    handler: Callable[[Any, Context], Awaitable[object]]


@final
class Service:
    """A participant service: the commands it handles, each with one async handler.

    Example:
        inventory = Service("inventory")

        @inventory.handles(Reserve)
        async def reserve(cmd: Reserve, ctx: Context) -> Reserved:
            ...

    A command's name on the wire is its class's ``__name__``; it arrives on
    the routing key ``{service}.{command}``. Run the service with a
    `ParticipantWorker`.
    """

    def __init__(self, name: str) -> None:
        """Create a service with no handlers.

        Args:
            name: The service's name, one word of a routing key: no ``.``,
                ``*``, ``#`` or whitespace (e.g. ``"inventory"``).

        Raises:
            ServiceDefinitionError: If the name is empty or not one word.
        """
        if not _SERVICE_NAME.fullmatch(name):
            raise ServiceDefinitionError(
                f"service name {name!r} must be one non-empty word without '.', '*', '#' "
                "or whitespace, since it is a routing key word"
            )
        self._name = name
        self._handlers: dict[str, Registration] = {}

    @property
    def name(self) -> str:
        """The service's name; its queue is ``{name}.commands``."""
        return self._name

    @property
    def commands(self) -> tuple[str, ...]:
        """The names of the commands it handles, sorted."""
        return tuple(sorted(self._handlers))

    def worker(
        self, *, transport: Transport, idempotency: IdempotencyStore, clock: Clock
    ) -> ParticipantWorker:
        """A worker for this service with default settings (the in-memory harness uses it)."""
        # The worker module imports this one for Service, so it is imported here.
        from participants._worker import ParticipantWorker

        return ParticipantWorker(self, transport=transport, idempotency=idempotency, clock=clock)

    def handler_for(self, command: str) -> Registration | None:
        """The registration of the command named ``command``, if there is one."""
        return self._handlers.get(command)

    def handles(self, command: type[C]) -> Callable[[CommandHandler[C, R]], CommandHandler[C, R]]:
        """Register the decorated async function as the handler of ``command``.

        The handler gets the payload converted to ``command`` and a `Context`.
        It either applies its effect and returns a result, or raises and applies
        nothing; raise `Failure` to name the failure and say whether a retry
        can help. The function is returned unchanged.

        Args:
            command: The command's msgspec Struct class; its ``__name__`` is the
                command's name on the wire.

        Returns:
            The decorator.

        Raises:
            ServiceDefinitionError: If ``command`` is not a msgspec Struct class,
                its name is already registered, or the handler is not async.
        """
        name = self._check_command(command)

        def register(handler: CommandHandler[C, R]) -> CommandHandler[C, R]:
            if not _is_async(handler):
                raise ServiceDefinitionError(
                    f"the handler of {self._name}.{name} must be an async function "
                    f"(async def), got {handler!r}"
                )
            self._check_command(command)
            self._handlers[name] = Registration(name, command, handler)
            return handler

        return register

    def _check_command(self, command: object) -> str:
        if not (isinstance(command, type) and issubclass(command, msgspec.Struct)):
            raise ServiceDefinitionError(
                f"@{self._name}.handles() takes a msgspec Struct class, got {command!r}"
            )
        name = command.__name__
        existing = self._handlers.get(name)
        if existing is not None:
            raise ServiceDefinitionError(
                f"service {self._name!r} already has a handler for {name!r} "
                f"({_describe(existing.handler)}); a command has exactly one handler"
            )
        return name

    def __repr__(self) -> str:
        return f"Service({self._name!r}, commands={list(self.commands)!r})"


def _is_async(handler: object) -> bool:
    while isinstance(handler, functools.partial):
        handler = handler.func
    handler = inspect.unwrap(handler) if callable(handler) else handler
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 - a callable object's async __call__
    )


def _describe(handler: object) -> str:
    module = getattr(handler, "__module__", None)
    qualname = getattr(handler, "__qualname__", None)
    return f"{module}.{qualname}" if module and qualname else repr(handler)
