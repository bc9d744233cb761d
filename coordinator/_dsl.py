"""The saga DSL: a builder that turns plain Python into a validated definition.

A definition is checked when it is built, so a mistake fails at import time
with a message that says what to fix, not halfway through a saga in production.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, TypeVar, overload

import msgspec

from coordinator._errors import SagaDefinitionError
from coordinator.core import (
    Node,
    OnTimeout,
    OnUnavailable,
    ParallelDef,
    Retry,
    SagaDefinition,
    StepDef,
    WaitDef,
)

__all__ = ["Breaker", "Saga", "breakers_of", "sensitive_of"]

D = TypeVar("D")
R = TypeVar("R")
S = TypeVar("S")

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
DEFAULT_COMPENSATION_RETRY = Retry(
    attempts=10, backoff=timedelta(seconds=1), max_backoff=timedelta(seconds=60)
)


def _typed(kind: type[R], fn: Callable[[D, R], S]) -> Callable[[D, dict[str, object]], S]:
    """Adapt a callback on a typed value to the JSON object the core carries."""

    def call(data: D, raw: dict[str, object]) -> S:
        return fn(data, msgspec.convert(raw, kind))

    return call


@dataclass(frozen=True, slots=True, kw_only=True)
class Breaker:
    """The circuit breaker of one participant service (``Saga(breakers=...)``).

    Args:
        fail_max: Consecutive failures (retryable ``TaskFailed``, timeouts) that open it.
        reset_timeout: How long it stays open before letting probes through (half-open).
        success_threshold: Successes in half-open that close it.
        probes: Commands let through while half-open, across every replica together.

    ``SAGA_BREAKER_DEFAULTS`` and ``SAGA_BREAKERS`` override these per deployment.
    """

    fail_max: int = 5
    reset_timeout: timedelta = timedelta(seconds=30)
    success_threshold: int = 1
    probes: int = 1

    def __post_init__(self) -> None:
        for name in ("fail_max", "success_threshold", "probes"):
            if getattr(self, name) < 1:
                raise SagaDefinitionError(f"Breaker: {name} must be >= 1")
        if self.reset_timeout <= timedelta(0):
            raise SagaDefinitionError("Breaker: reset_timeout must be positive")


# The breakers each definition was built with, by the definition's identity (it compares
# by identity). Kept beside the definition rather than in it: the core never reads them,
# the breakers live outside it. Only definitions that configure breakers are held here.
_BREAKERS: dict[SagaDefinition[Any], Mapping[str, Breaker]] = {}


def breakers_of(definition: SagaDefinition[Any]) -> Mapping[str, Breaker]:
    """The per-service breakers ``definition``'s ``Saga(breakers=...)`` configured."""
    return _BREAKERS.get(definition, {})


_SENSITIVE: dict[SagaDefinition[Any], frozenset[str]] = {}


def sensitive_of(definition: SagaDefinition[Any]) -> frozenset[str]:
    """The fields of ``definition``'s data sealed before they are stored."""
    return _SENSITIVE.get(definition, frozenset())


def _annotated_sensitive(data: type[Any]) -> frozenset[str]:
    """Fields of a Struct annotated ``Annotated[T, Meta(extra={"sensitive": True})]``."""
    if not (isinstance(data, type) and issubclass(data, msgspec.Struct)):
        return frozenset()
    found = set()
    for field in msgspec.structs.fields(data):
        metas = getattr(field.type, "__metadata__", ())
        if any(isinstance(m, msgspec.Meta) and (m.extra or {}).get("sensitive") for m in metas):
            found.add(field.encode_name)
    return frozenset(found)


def _check_sensitive(name: str, data: type[Any], fields: frozenset[str]) -> None:
    if not (isinstance(data, type) and issubclass(data, msgspec.Struct)):
        return  # a dict: any key may come
    known = {f.encode_name for f in msgspec.structs.fields(data)}
    unknown = sorted(fields - known)
    if unknown:
        raise SagaDefinitionError(
            f"saga {name!r}: sensitive={unknown} are not fields of {data.__name__} "
            f"(its fields: {', '.join(sorted(known))})"
        )


class Saga(Generic[D]):
    """Builder of one saga definition.

    Args:
        name: Durable name of the saga. Running instances are keyed by it, so it
            never changes; a breaking change is a new ``version``.
        data: The type of the saga's data (a ``msgspec.Struct`` is best). Every
            callback receives the current value and returns a new one.
        version: Instances stay on the version they started with.
        deadline: The whole saga must end within this time, or it compensates.
        compensation_retry: How undo commands are retried before the saga is
            ``failed`` and waits for an operator.
        breakers: The circuit breaker of each participant service that needs other
            thresholds than the defaults, e.g. ``{"payments": Breaker(fail_max=3)}``.
        sensitive: Fields of ``data`` sealed (AES-256-GCM) before they reach the
            store; fields annotated ``Meta(extra={"sensitive": True})`` are too.
            A coordinator running such a saga needs ``SAGA_DATA_KEYS``.

    Example::

        saga = Saga("order", data=Order, deadline=timedelta(minutes=15))
        ORDER = saga.define(
            saga.step("reserve", service="inventory", send=reserve, undo=release),
            saga.step("ship", service="shipping", send=book, pivot=True),
        )
    """

    def __init__(
        self,
        name: str,
        *,
        data: type[D],
        version: int = 1,
        deadline: timedelta | None = None,
        compensation_retry: Retry = DEFAULT_COMPENSATION_RETRY,
        breakers: Mapping[str, Breaker] | None = None,
        sensitive: Iterable[str] = (),
    ) -> None:
        if not _NAME.match(name):
            raise SagaDefinitionError(
                f"saga name {name!r}: use letters, digits, '_', '.' and '-' only"
            )
        if version < 1:
            raise SagaDefinitionError(f"saga {name!r}: version must be >= 1, got {version}")
        self.name = name
        self.data = data
        self.version = version
        self.deadline = deadline
        self.compensation_retry = compensation_retry
        self.breakers = dict(breakers or {})
        if isinstance(sensitive, str):  # a bare "card" would be the set of its letters
            sensitive = (sensitive,)
        self.sensitive = frozenset(sensitive) | _annotated_sensitive(data)
        self.definition: SagaDefinition[D] | None = None
        # The nodes this builder made, by identity, so define() can tell a node another
        # builder made (or one built by hand); holding them keeps their ids unique.
        self._made: dict[int, Node[D]] = {}

    def _keep(self, node: Node[D]) -> None:
        self._made[id(node)] = node

    def step(
        self,
        name: str,
        *,
        service: str,
        send: Callable[[D], msgspec.Struct],
        undo: Callable[[D], msgspec.Struct] | None = None,
        result: type[R] | None = None,
        merge: Callable[[D, R], D] | None = None,
        retry: Retry | None = None,
        timeout: timedelta | None = None,
        when: Callable[[D], bool] | None = None,
        on_unavailable: OnUnavailable = "wait",
        pivot: bool = False,
    ) -> StepDef[D]:
        """A command to a participant ``service``.

        Args:
            name: Unique within the saga; the durable key of the step.
            service: The participant service; commands route to ``{service}.{Command}``.
            send: Builds the command (a ``msgspec.Struct``) from the saga data.
            undo: Builds the compensating command. Required for every step before
                the pivot.
            result: Type the participant's reply is decoded into, for ``merge``.
            merge: ``merge(data, result) -> data``: how the reply updates the data.
            retry: Retry policy for the command; by default a single attempt.
            timeout: How long one attempt may take. A timed-out step may have
                applied, so it is retried with the same idempotency key, and
                compensated if it never answers.
            when: The step runs only if ``when(data)`` is true; otherwise skipped.
            on_unavailable: With the service's circuit open: ``"wait"`` until it
                recovers (bounded by the saga deadline), or ``"compensate"`` now.
            pivot: The point of no return: after it succeeds the saga only goes
                forward, and steps after it have no undo.
        """
        if merge is not None and result is None:
            raise SagaDefinitionError(
                f"step {name!r}: merge= needs result= (the type the reply is decoded into)"
            )
        if on_unavailable not in ("wait", "compensate"):
            raise SagaDefinitionError(
                f"step {name!r}: on_unavailable must be 'wait' or 'compensate', "
                f"not {on_unavailable!r}"
            )
        apply = _typed(result, merge) if result is not None and merge is not None else None
        step = StepDef(
            name=name,
            service=service,
            send=send,
            undo=undo,
            apply_result=apply,
            result_type=result,
            retry=retry or Retry(),
            timeout=timeout,
            when=when,
            on_unavailable=on_unavailable,
            pivot=pivot,
        )
        self._keep(step)
        return step

    @overload
    def wait_for(
        self,
        signal: str,
        *,
        name: str | None = ...,
        timeout: timedelta | None = ...,
        on_timeout: OnTimeout = ...,
        when: Callable[[D], bool] | None = ...,
        data: None = ...,
    ) -> WaitDef[D]: ...

    @overload
    def wait_for(
        self,
        signal: str,
        *,
        name: str | None = ...,
        timeout: timedelta | None = ...,
        on_timeout: OnTimeout = ...,
        when: Callable[[D], bool] | None = ...,
        data: type[S],
        accept: Callable[[D, S], bool] | None = ...,
        merge: Callable[[D, S], D] | None = ...,
    ) -> WaitDef[D]: ...

    def wait_for(
        self,
        signal: str,
        *,
        name: str | None = None,
        timeout: timedelta | None = None,
        on_timeout: OnTimeout = "compensate",
        when: Callable[[D], bool] | None = None,
        data: type[S] | None = None,
        accept: Callable[[D, S], bool] | None = None,
        merge: Callable[[D, S], D] | None = None,
    ) -> WaitDef[D]:
        """Pause until the signal ``signal`` arrives (a human approval, a webhook).

        Args:
            signal: Name the signal is sent under (API, CLI or message).
            name: Name of the wait in the saga; defaults to ``signal``.
            timeout: How long to wait; then ``on_timeout`` applies.
            on_timeout: ``"compensate"`` (the default) or ``"continue"`` without it.
            when: Wait only if ``when(data)`` is true.
            data: Type the signal's data is decoded into. A signal whose data does
                not fit is refused (recorded with the reason) and the wait goes on.
            accept: ``accept(data, signal) -> bool``; a rejected signal compensates.
            merge: ``merge(data, signal) -> data``.
        """
        if on_timeout not in ("compensate", "continue"):
            raise SagaDefinitionError(
                f"wait {name or signal!r}: on_timeout must be 'compensate' or 'continue', "
                f"not {on_timeout!r}"
            )
        wait = WaitDef(
            name=name or signal,
            signal=signal,
            data_type=data,
            timeout=timeout,
            on_timeout=on_timeout,
            when=when,
            accept=_typed(data, accept) if data is not None and accept is not None else None,
            apply_signal=_typed(data, merge) if data is not None and merge is not None else None,
        )
        self._keep(wait)
        return wait

    def parallel(self, name: str, *branches: StepDef[D]) -> ParallelDef[D]:
        """Steps dispatched together; the saga continues when all have succeeded."""
        group = ParallelDef(name=name, branches=tuple(branches))
        self._keep(group)
        return group

    def define(self, *nodes: Node[D]) -> SagaDefinition[D]:
        """Validate the nodes, in order, and freeze them into a definition.

        Raises:
            SagaDefinitionError: with what is wrong and how to fix it.
        """
        definition = _validate(self, nodes)
        services = {step.service for step in definition.steps.values()}
        unknown = sorted(set(self.breakers) - services)
        if unknown:
            raise SagaDefinitionError(
                f"saga {self.name!r}: breakers for {', '.join(unknown)}, which no step calls "
                f"(its services: {', '.join(sorted(services)) or 'none'})"
            )
        if self.breakers:
            _BREAKERS[definition] = dict(self.breakers)
        if self.sensitive:
            _check_sensitive(self.name, self.data, self.sensitive)
            _SENSITIVE[definition] = self.sensitive
        self.definition = definition
        return definition


def _flat(nodes: tuple[Node[D], ...]) -> Iterator[tuple[Node[D], ParallelDef[D] | None]]:
    for node in nodes:
        if isinstance(node, ParallelDef):
            yield node, None
            for branch in node.branches:
                yield branch, node
        else:
            yield node, None


def _validate(saga: Saga[D], nodes: tuple[Node[D], ...]) -> SagaDefinition[D]:
    where = f"saga {saga.name!r}"
    if not nodes:
        raise SagaDefinitionError(f"{where}: define() needs at least one step")
    names: set[str] = set()
    steps: dict[str, StepDef[D]] = {}
    waits: dict[str, WaitDef[D]] = {}
    for node, group in _flat(nodes):
        if (
            not isinstance(node, StepDef | WaitDef | ParallelDef)
            or saga._made.get(id(node)) is not node
        ):
            raise SagaDefinitionError(
                f"{where}: {node!r} was not made by this saga's builder; "
                f"build it with {saga.name}.step(...), .parallel(...) or .wait_for(...)"
            )
        what = f"{where}, step {node.name!r}"
        if not _NAME.match(node.name):
            raise SagaDefinitionError(f"{what}: use letters, digits, '_', '.' and '-' only")
        if node.name in names:
            raise SagaDefinitionError(f"{what}: the name is used twice; step names must be unique")
        names.add(node.name)
        if isinstance(node, StepDef):
            if not _NAME.match(node.service):
                raise SagaDefinitionError(f"{what}: service {node.service!r} is not a valid name")
            if group is not None and node.pivot:
                raise SagaDefinitionError(
                    f"{what}: a pivot cannot be a branch of parallel group {group.name!r}"
                )
            steps[node.name] = node
        elif isinstance(node, WaitDef):
            waits[node.name] = node
        elif not node.branches:
            raise SagaDefinitionError(f"{what}: a parallel group needs at least one step")
        _check_timeouts(saga, node)
    _check_pivot(saga, nodes)
    return SagaDefinition(
        name=saga.name,
        version=saga.version,
        data_type=saga.data,
        nodes=nodes,
        deadline=saga.deadline,
        compensation_retry=saga.compensation_retry,
        steps=steps,
        waits=waits,
    )


def _check_timeouts(saga: Saga[D], node: Node[D]) -> None:
    if isinstance(node, ParallelDef):
        return
    timeout = node.timeout
    if timeout is not None and timeout <= timedelta(0):
        raise SagaDefinitionError(f"saga {saga.name!r}, step {node.name!r}: timeout must be > 0")
    if timeout is not None and saga.deadline is not None and timeout > saga.deadline:
        raise SagaDefinitionError(
            f"saga {saga.name!r}, step {node.name!r}: timeout {timeout} is longer than the "
            f"saga deadline {saga.deadline}; shorten the timeout or lengthen the deadline"
        )


def _check_pivot(saga: Saga[D], nodes: tuple[Node[D], ...]) -> None:
    """Compensatable steps, then at most one pivot, then steps that only go forward."""
    pivot: StepDef[D] | None = None
    for node, _group in _flat(nodes):
        if not isinstance(node, StepDef):
            continue
        what = f"saga {saga.name!r}, step {node.name!r}"
        if node.pivot:
            if pivot is not None:
                raise SagaDefinitionError(
                    f"{what}: a saga has one pivot and {pivot.name!r} is already it"
                )
            if node.undo is not None:
                raise SagaDefinitionError(
                    f"{what}: a pivot is the point of no return and has no undo=; "
                    "drop pivot=True or the undo"
                )
            pivot = node
        elif pivot is None and node.undo is None:
            raise SagaDefinitionError(
                f"{what}: has no compensation (undo=) but comes before the pivot; give it an "
                "undo=, or mark the point of no return with pivot=True"
            )
        elif pivot is not None and node.undo is not None:
            raise SagaDefinitionError(
                f"{what}: has an undo= but comes after the pivot {pivot.name!r}, where the saga "
                "can only go forward; move it before the pivot or drop the undo"
            )
