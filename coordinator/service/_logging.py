"""Logging of the service processes (``saga run``, ``saga participant``): structlog.

The library logs through the standard ``logging`` module, as do its
dependencies (aio-pika, redis-py); only the process configures output. Every
record, ours and theirs, goes through one structlog formatter to stderr: a
console line for people or one JSON object per line for a log shipper
(``SAGA_LOG_FORMAT``; by default JSON unless stderr is a terminal).

Each line says which trace and span it was written in (``trace_id``,
``span_id``, when tracing is on) and which saga and step it was about
(``saga_id``, ``step``, where known), so a log line leads to its trace.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog
from opentelemetry import trace

from coordinator.telemetry import current_saga

__all__ = ["LogFormat", "LogLevel", "configure_logging"]

LogFormat = Literal["auto", "console", "json"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

# Chatty at INFO about every connection and channel; their warnings still show.
_QUIETER = ("aiormq", "aio_pika", "redis")


def add_trace_and_saga(
    logger: object, method: str, event: structlog.types.EventDict
) -> structlog.types.EventDict:
    """Add the current span's ids and the current saga (and step) to a record."""
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        event.setdefault("trace_id", trace.format_trace_id(span.trace_id))
        event.setdefault("span_id", trace.format_span_id(span.span_id))
    saga = current_saga()
    if saga is not None:
        event.setdefault("saga_id", saga[0])
        if saga[1]:
            event.setdefault("step", saga[1])
    return event


def configure_logging(level: LogLevel = "INFO", output: LogFormat = "auto") -> None:
    """Send every log record to stderr through structlog, at ``level`` and above."""
    if output == "auto":
        output = "console" if sys.stderr.isatty() else "json"
    shared: list[structlog.types.Processor] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_and_saga,
    ]
    renderer: structlog.types.Processor
    if output == "json":
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in _QUIETER:
        logging.getLogger(name).setLevel(logging.WARNING)
    # Code that logs through structlog itself takes the same way out.
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
