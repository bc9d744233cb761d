"""The participant's spans: processing a command (CONSUMER) and sending its
reply (PRODUCER), in the saga's trace.

The command's processing span is a child of the coordinator's send span (the
``traceparent`` in the AMQP headers): a single-message process span may take
its creation context as parent, and this one does, so the handler's own spans
(HTTP, SQL) nest under the saga. A participant written without this SDK joins
the same way, through any instrumentation that extracts ``traceparent``
(the aio-pika instrumentation, FastStream).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import final

from opentelemetry import propagate, trace
from opentelemetry.semconv._incubating.attributes import messaging_attributes as msg
from opentelemetry.semconv.attributes import error_attributes
from opentelemetry.trace import SpanKind, Status, StatusCode

from contracts import Command
from coordinator.telemetry._tracing import (
    SAGA_ATTEMPT,
    SAGA_KIND,
    SAGA_NAME,
    SAGA_STEP,
    SAGA_VERSION,
    messaging_attributes,
)

__all__ = ["ServiceTracer"]

_PROCESS = msg.MessagingOperationTypeValues.PROCESS.value
_SEND = msg.MessagingOperationTypeValues.SEND.value


@final
class ServiceTracer:
    """Makes a participant service's spans."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    @contextlib.contextmanager
    def processing(
        self, queue: str, message_id: str, headers: Mapping[str, str], command: Command
    ) -> Iterator[None]:
        """The span the command is handled in (the handler runs inside it)."""
        attributes = messaging_attributes(_PROCESS, queue, message_id, command.saga_id)
        attributes.update(
            {
                msg.MESSAGING_RABBITMQ_DESTINATION_ROUTING_KEY: command.routing_key,
                SAGA_NAME: command.saga_name,
                SAGA_VERSION: command.saga_version,
                SAGA_STEP: command.step,
                SAGA_KIND: command.kind,
                SAGA_ATTEMPT: command.attempt,
            }
        )
        with self._tracer.start_as_current_span(
            f"process {queue}",
            context=propagate.extract(headers),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        ):
            yield

    @contextlib.contextmanager
    def replying(
        self, routing_key: str, message_id: str, saga_id: str, error_type: str | None
    ) -> Iterator[dict[str, str]]:
        """The span a reply is sent in; gives the headers that carry it.

        A failure reply (``error_type``) marks the command's processing span as failed.
        """
        if error_type is not None:
            processing = trace.get_current_span()
            processing.set_attribute(error_attributes.ERROR_TYPE, error_type)
            processing.set_status(Status(StatusCode.ERROR, error_type))
        destination = f"events:{routing_key}"
        attributes = messaging_attributes(_SEND, destination, message_id, saga_id)
        attributes[msg.MESSAGING_RABBITMQ_DESTINATION_ROUTING_KEY] = routing_key
        with self._tracer.start_as_current_span(
            f"send {destination}", kind=SpanKind.PRODUCER, attributes=attributes
        ):
            headers: dict[str, str] = {}
            propagate.inject(headers)
            yield headers
