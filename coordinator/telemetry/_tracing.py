"""One trace per saga (OpenTelemetry).

The saga's root span (``start {saga}``) is opened when the saga is created,
and exported once the start commits; its context is stored with the saga
(``SagaState.trace``). Every later
input, on any replica and after any restart, is processed in a span whose
parent is that stored context, with a link to the context of the message that
brought it (the ``traceparent`` its sender put in the AMQP headers). No span is
open while a saga waits: a transition's span ends once its messages are
published, and the participant's work is the participant's own span.

With ``linked`` (for sagas that run for days) each input starts a new trace
linked to the saga's root, so no trace grows without end.

The names and attributes follow the messaging semantic conventions for
RabbitMQ (``send``/``process`` operations; the constants of
``opentelemetry-semantic-conventions``), plus a ``saga.*`` namespace of our own.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator, Mapping
from typing import Any, Final, Literal, final

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.semconv._incubating.attributes import messaging_attributes as msg
from opentelemetry.semconv.attributes import error_attributes
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from coordinator.core import (
    CancelRequested,
    Decision,
    Dispatch,
    Input,
    PauseRequested,
    ResumeRequested,
    RetryRequested,
    SagaDefinition,
    SagaState,
    ServiceRecovered,
    SignalReceived,
    Start,
    StepCompleted,
    StepFailed,
    TimerFired,
    TimerKey,
)
from coordinator.ports import Delivery, OutboxEntry

__all__ = ["TraceMode", "SagaTracer", "messaging_attributes"]

TraceMode = Literal["continuous", "linked"]

# The ``saga.*`` namespace, ours as OpenTelemetry asks of applications.
SAGA_ID: Final = "saga.id"
SAGA_NAME: Final = "saga.name"
SAGA_VERSION: Final = "saga.version"
SAGA_STEP: Final = "saga.step"
SAGA_KIND: Final = "saga.kind"
SAGA_ATTEMPT: Final = "saga.attempt"
SAGA_STATUS: Final = "saga.status"
SAGA_OUTCOME: Final = "saga.outcome"
SAGA_SIGNAL: Final = "saga.signal.name"
SAGA_TIMER: Final = "saga.timer"

_RABBITMQ: Final = msg.MessagingSystemValues.RABBITMQ.value
_SEND: Final = msg.MessagingOperationTypeValues.SEND.value
_PROCESS: Final = msg.MessagingOperationTypeValues.PROCESS.value
_PARKED: Final = frozenset({"awaiting_service", "compensation_awaiting_service"})


def messaging_attributes(
    operation: str, destination: str, message_id: str, saga_id: str
) -> dict[str, AttributeValue]:
    """The semantic-convention attributes of a RabbitMQ send or process span."""
    return {
        msg.MESSAGING_SYSTEM: _RABBITMQ,
        msg.MESSAGING_OPERATION_TYPE: operation,
        msg.MESSAGING_OPERATION_NAME: "publish" if operation == _SEND else operation,
        msg.MESSAGING_DESTINATION_NAME: destination,
        msg.MESSAGING_MESSAGE_ID: message_id,
        # Not ``messaging.message.conversation_id`` (recommended, not required): it
        # would be the saga id (every message's AMQP correlation id), which every
        # span carries as ``saga.id``; each attribute costs some 10 µs to make and
        # encode for OTLP, on ~20 spans per saga.
        SAGA_ID: saga_id,
    }


def _saga(state: SagaState[Any]) -> dict[str, AttributeValue]:
    return {SAGA_ID: state.saga_id, SAGA_NAME: state.name, SAGA_VERSION: state.version}


@functools.lru_cache(maxsize=4096)
def _context_of(traceparent: str) -> otel_context.Context | None:
    """The context a stored ``traceparent`` stands for (kept: a saga's inputs
    follow each other on a replica, and a Context never changes)."""
    if not traceparent:
        return None
    found = propagate.extract({"traceparent": traceparent})
    return found if trace.get_current_span(found).get_span_context().is_valid else None


def _link(carrier: Mapping[str, str] | None) -> list[Link]:
    """A link to the context a message was sent in, if it carries one."""
    if not carrier or "traceparent" not in carrier:
        return []
    sent_in = trace.get_current_span(propagate.extract(carrier)).get_span_context()
    return [Link(sent_in)] if sent_in.is_valid else []


@final
class SagaTracer:
    """Makes the spans of sagas (the ``SpanMaker`` of ``Telemetry``).

    Args:
        tracer: The OpenTelemetry tracer to make them with.
        mode: ``continuous`` (one trace per saga) or ``linked`` (a trace per input,
            linked to the saga's root).
    """

    def __init__(self, tracer: trace.Tracer, mode: TraceMode = "continuous") -> None:
        self._tracer = tracer
        self._mode = mode
        # Root spans of starts not committed yet, by the traceparent given out.
        self._unconfirmed: dict[str, tuple[trace.Span, int]] = {}

    def root(self, state: SagaState[Any], carrier: Mapping[str, str] | None) -> str:
        # A child of whoever sent the start (its span context is in the message),
        # or of the caller's current span when started in-process.
        parent = propagate.extract(carrier) if carrier else None
        at = time.time_ns()
        span = self._tracer.start_span(
            f"start {state.name}",
            context=parent,
            kind=SpanKind.INTERNAL,
            attributes=_saga(state),
            start_time=at,
        )
        headers: dict[str, str] = {}
        propagate.inject(headers, context=trace.set_span_in_context(span))
        traceparent = headers.get("traceparent", "")
        if not traceparent:  # no recording tracer behind it: nothing to hold
            span.end()
            return ""
        # Ended (so exported) only once the start commits: a start refused because
        # the saga exists (a start sent twice, redelivered) must not leave a second
        # root, and a second trace, for the same saga. A span never ended is never
        # exported.
        self._unconfirmed[traceparent] = (span, at)
        return traceparent

    @contextlib.contextmanager
    def transition(
        self, state: SagaState[Any], what: str, delivery: Delivery | None
    ) -> Iterator[None]:
        carrier = None if delivery is None else delivery.headers
        links = _link(carrier)
        saga_root = _context_of(state.trace)
        attributes = _saga(state)
        if self._mode == "linked" and saga_root is not None:
            root_span = trace.get_current_span(saga_root).get_span_context()
            links.append(Link(root_span, {"saga.link": "root"}))
            parent = otel_context.Context()
        else:
            # A saga started before tracing was on has no stored context: its
            # spans join the sender's trace, or stand alone.
            parent = saga_root if saga_root is not None else otel_context.Context()
        if delivery is None:
            if self._mode == "continuous" or what == "start":
                # A timer, or a call in this process: the decision's own span
                # (``timeout ...``, ``signal ...``) is the first of the input.
                token = otel_context.attach(saga_root or parent)
                try:
                    yield
                finally:
                    otel_context.detach(token)
                    # A start that did not commit: its root is dropped, never exported.
                    self._unconfirmed.pop(state.trace, None)
                return
            name, kind = f"{what} {state.name}", SpanKind.INTERNAL
        else:
            queue = str(getattr(delivery, "queue", "") or "events")
            name, kind = f"process {queue}", SpanKind.CONSUMER
            attributes.update(
                messaging_attributes(_PROCESS, queue, delivery.message_id, state.saga_id)
            )
        span = self._tracer.start_span(
            name, context=parent, kind=kind, attributes=attributes, links=links
        )
        # A start's processing is exported with its root only: if the start does
        # not commit, neither is (see ``root``).
        starting = bool(state.trace) and state.trace in self._unconfirmed
        try:
            with trace.use_span(span, end_on_exit=False):
                yield
        finally:
            if not starting or self._unconfirmed.pop(state.trace, None) is None:
                span.end()

    @contextlib.contextmanager
    def decided(
        self,
        definition: SagaDefinition[Any],
        before: SagaState[Any] | None,
        inp: Input | Start[Any],
        decision: Decision[Any],
    ) -> Iterator[None]:
        """The decision's span, open while its messages are sent (their parent),
        with a span for each compensation sent, each step a breaker parked or let
        go, and the end."""
        state = decision.state
        if before is None:  # the start committed: its root span goes out
            held = self._unconfirmed.pop(state.trace, None)
            if held is not None:
                held[0].end(end_time=held[1])
        name, attributes = _decision_span(state, inp)
        attributes[SAGA_STATUS] = state.status
        with self._tracer.start_as_current_span(name, attributes=attributes) as span:
            span.add_event(
                "saga.transition",
                {
                    "saga.status.from": decision.status_before or "",
                    "saga.status.to": state.status,
                    "saga.note": decision.note,
                },
            )
            self._effects(definition, before, decision)
            yield

    def _effects(
        self,
        definition: SagaDefinition[Any],
        before: SagaState[Any] | None,
        decision: Decision[Any],
    ) -> None:
        state = decision.state
        for effect in decision.effects:
            if isinstance(effect, Dispatch) and effect.kind == "compensation":
                self._instant(
                    f"compensate {state.name}.{effect.step}",
                    state,
                    {SAGA_STEP: effect.step, SAGA_KIND: effect.kind, SAGA_ATTEMPT: effect.attempt},
                )
        was = {} if before is None else before.steps
        for step, now in state.steps.items():
            earlier = was.get(step)
            parked_now = now.status in _PARKED
            parked_before = earlier is not None and earlier.status in _PARKED
            if parked_now and not parked_before:
                service = definition.steps[step].service
                self._instant(
                    f"park {state.name}.{step}",
                    state,
                    {SAGA_STEP: step, "saga.service": service},
                    error="CircuitBreakerError",
                )
            elif parked_before and not parked_now:
                self._instant(f"resume {state.name}.{step}", state, {SAGA_STEP: step})
        if state.terminal and (before is None or not before.terminal):
            self._instant(
                f"end {state.name}",
                state,
                {SAGA_OUTCOME: state.status},
                error=None if state.status == "completed" else f"saga_{state.status}",
            )

    def _instant(
        self,
        name: str,
        state: SagaState[Any],
        attributes: dict[str, AttributeValue],
        *,
        error: str | None = None,
    ) -> None:
        span = self._tracer.start_span(name, attributes={**_saga(state), **attributes})
        if error is not None:
            span.set_attribute(error_attributes.ERROR_TYPE, error)
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()

    @contextlib.contextmanager
    def sending(self, entry: OutboxEntry) -> Iterator[Mapping[str, str] | None]:
        # Right after a commit the decision's span is current; the relay, later and
        # maybe on another replica, sends under the saga's root kept in the entry.
        current = trace.get_current_span().get_span_context()
        parent = None if current.is_valid else propagate.extract(entry.headers)
        destination = f"{entry.exchange}:{entry.routing_key}"
        attributes = messaging_attributes(_SEND, destination, entry.message_id, entry.saga_id)
        attributes[msg.MESSAGING_RABBITMQ_DESTINATION_ROUTING_KEY] = entry.routing_key
        span = self._tracer.start_span(
            f"send {destination}", context=parent, kind=SpanKind.PRODUCER, attributes=attributes
        )
        # Nothing runs inside a send span: it is not made current, only injected.
        headers = dict(entry.headers)
        propagate.inject(headers, context=trace.set_span_in_context(span))
        try:
            yield headers
        except Exception as exc:
            span.record_exception(exc)
            span.set_attribute(error_attributes.ERROR_TYPE, type(exc).__name__)
            span.set_status(Status(StatusCode.ERROR, str(exc)))
            raise
        finally:
            span.end()


def _decision_span(state: SagaState[Any], inp: Input | Start[Any]) -> tuple[str, dict[str, Any]]:
    """The decision span's name and attributes, by what came in."""
    attributes: dict[str, Any] = _saga(state)
    match inp:
        case StepCompleted() | StepFailed():
            attributes.update({SAGA_STEP: inp.step, SAGA_KIND: inp.kind, SAGA_ATTEMPT: inp.attempt})
            return f"decide {state.name}.{inp.step}", attributes
        case TimerFired():
            key = TimerKey.parse(inp.timer)
            attributes[SAGA_TIMER] = inp.timer
            if key is not None and key.step:
                attributes.update({SAGA_STEP: key.step, SAGA_KIND: key.step_kind})
                return f"{key.kind} {state.name}.{key.step}", attributes
            return f"{key.kind if key else 'timer'} {state.name}", attributes
        case SignalReceived():
            attributes[SAGA_SIGNAL] = inp.name
            return f"signal {state.name}", attributes
        case CancelRequested():
            return f"cancel {state.name}", attributes
        case RetryRequested():
            return f"retry {state.name}", attributes
        case PauseRequested():
            return f"pause {state.name}", attributes
        case ResumeRequested():
            return f"unpause {state.name}", attributes
        case ServiceRecovered():
            attributes["saga.service"] = inp.service
            return f"recovered {state.name}", attributes
        case _:
            return f"decide {state.name}", attributes
