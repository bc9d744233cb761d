"""The service processes' logs: every stdlib record, ours and the libraries', goes
through structlog to stderr, as console lines or JSON, at ``SAGA_LOG_LEVEL``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from coordinator.service import Settings

PROGRAM = """
import logging, sys
from coordinator.service import Settings, configure_logging
settings = Settings()
configure_logging(settings.log_level, settings.log_format)
logging.getLogger("coordinator").info("coordinator running in namespace %r on %s", "ns", "asyncio")
logging.getLogger("coordinator").debug("not at INFO")
logging.getLogger("aiormq.connection").info("chatty library line")
try:
    1 / 0
except ZeroDivisionError:
    logging.getLogger("participants").warning("handler failed", exc_info=True)
print("stdout stays clean")
"""


def run(**env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SAGA_")}
    return subprocess.run(
        [sys.executable, "-c", PROGRAM],
        env={**environ, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )


def test_console_lines_keep_the_message_as_written() -> None:
    done = run(SAGA_LOG_FORMAT="console")
    assert done.stdout == "stdout stays clean\n"
    assert "coordinator running in namespace 'ns' on asyncio" in done.stderr
    assert "not at INFO" not in done.stderr
    assert "chatty library line" not in done.stderr
    assert "handler failed" in done.stderr
    assert "ZeroDivisionError" in done.stderr


def test_json_is_one_object_per_line() -> None:
    done = run(SAGA_LOG_FORMAT="json", SAGA_LOG_LEVEL="debug")
    records = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    by_event = {r["event"]: r for r in records}
    running = by_event["coordinator running in namespace 'ns' on asyncio"]
    assert (running["level"], running["logger"]) == ("info", "coordinator")
    assert "timestamp" in running
    assert "not at INFO" in by_event, "SAGA_LOG_LEVEL=debug lets it through"
    assert "ZeroDivisionError" in by_event["handler failed"]["exception"]
    assert len(records) == len(done.stderr.splitlines()), "a traceback stays inside its record"


def test_an_unknown_level_or_format_is_a_settings_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("SAGA_LOG_LEVEL", "loud")
    with pytest.raises(ValidationError, match="log_level"):
        Settings()
    monkeypatch.setenv("SAGA_LOG_LEVEL", "warning")
    monkeypatch.setenv("SAGA_LOG_FORMAT", "xml")
    with pytest.raises(ValidationError, match="log_format"):
        Settings()


TRACED = """
import logging
from opentelemetry.sdk.trace import TracerProvider
from coordinator.service import configure_logging
from coordinator.telemetry import SagaScope
configure_logging("INFO")
tracer = TracerProvider().get_tracer("test")
with tracer.start_as_current_span("work") as span, SagaScope("order-7", "payment"):
    context = span.get_span_context()
    print(format(context.trace_id, "032x"), format(context.span_id, "016x"))
    logging.getLogger("coordinator").info("inside")
logging.getLogger("coordinator").info("outside")
"""


def test_lines_are_json_off_a_terminal_and_carry_the_trace_and_the_saga() -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SAGA_")}
    done = subprocess.run(
        [sys.executable, "-c", TRACED],
        env=environ,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    trace_id, span_id = done.stdout.split()
    records = {r["event"]: r for r in map(json.loads, done.stderr.splitlines())}
    inside = records["inside"]
    assert (inside["trace_id"], inside["span_id"]) == (trace_id, span_id)
    assert (inside["saga_id"], inside["step"]) == ("order-7", "payment")
    assert not {"trace_id", "span_id", "saga_id", "step"} & set(records["outside"])
