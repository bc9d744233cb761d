"""A participant process's metrics: commands handled, how long handlers took,
dead letters, and the messaging counts of its queues and replies."""

from __future__ import annotations

from typing import Protocol, final

from opentelemetry.metrics import Meter
from opentelemetry.semconv._incubating.attributes.messaging_attributes import (
    MESSAGING_DESTINATION_NAME,
    MESSAGING_OPERATION_NAME,
    MESSAGING_SYSTEM,
)
from opentelemetry.semconv._incubating.metrics.messaging_metrics import (
    MESSAGING_CLIENT_CONSUMED_MESSAGES,
    MESSAGING_CLIENT_SENT_MESSAGES,
)

from contracts import Reply, TaskCompleted, routes
from coordinator.telemetry._cells import Cell, CounterCells
from coordinator.telemetry._histograms import HistogramCells, Recorder
from coordinator.telemetry._metrics import (
    DEAD_LETTER_REASON,
    RABBITMQ,
    SECONDS_BUCKETS,
    SERVICE,
)

__all__ = ["NO_METERS", "ParticipantMetrics", "ServiceMeters"]

COMMAND = "saga.command"
COMMAND_OUTCOME = "saga.command.outcome"


class ServiceMeters(Protocol):
    """What a participant's worker reports, for its one service."""

    def consumed(self) -> None:
        """A command was delivered."""

    def dead_lettered(self, reason: str) -> None: ...

    def handled(self, command: str, reply: Reply, seconds: float) -> None:
        """The handler ran for ``seconds`` and its answer is ``reply``."""

    def answered(self, command: str, outcome: str) -> None:
        """A command answered without running the handler: ``replayed`` (the reply
        recorded for its key) or ``refused`` (its step's compensation has begun)."""

    def sent(self, routing_key: str) -> None:
        """A reply was published to ``events`` with ``routing_key``."""


@final
class _NoMeters:
    def consumed(self) -> None:
        pass

    def dead_lettered(self, reason: str) -> None:
        pass

    def handled(self, command: str, reply: Reply, seconds: float) -> None:
        pass

    def answered(self, command: str, outcome: str) -> None:
        pass

    def sent(self, routing_key: str) -> None:
        pass


NO_METERS: ServiceMeters = _NoMeters()
"""The meters of a worker without metrics: every call does nothing."""


@final
class ParticipantMetrics:
    """The instruments of a participant process; ``service`` binds them to one service.

    Args:
        meter: Where the instruments are made.
        namespace: The deployment's namespace, for the broker names of queues and
            exchanges.
    """

    def __init__(self, meter: Meter, *, namespace: str = routes.DEFAULT_NAMESPACE) -> None:
        self.namespace = namespace
        self.commands: CounterCells[tuple[str, str, str]] = CounterCells(
            meter,
            "saga.participant.commands",
            unit="{command}",
            description="Commands answered, by outcome: completed, failed (retryable), "
            "rejected (not retryable), replayed (a recorded reply), refused (undo begun).",
        )
        self.duration: HistogramCells[tuple[str, str, str]] = HistogramCells(
            meter,
            "saga.participant.handler.duration",
            unit="s",
            description="How long a command's handler ran.",
            bounds=SECONDS_BUCKETS,
        )
        self.dead_letters: CounterCells[tuple[str, str]] = CounterCells(
            meter, "saga.dead_letters", unit="{message}", description="Messages dead-lettered."
        )
        self.consumed: CounterCells[str] = CounterCells(
            meter,
            MESSAGING_CLIENT_CONSUMED_MESSAGES,
            unit="{message}",
            description="Number of messages that were delivered to the application.",
        )
        self.sent: CounterCells[str] = CounterCells(
            meter,
            MESSAGING_CLIENT_SENT_MESSAGES,
            unit="{message}",
            description="Number of messages producer attempted to send to the broker.",
        )

    def service(self, name: str) -> ServiceMeters:
        """The meters of service ``name``'s worker."""
        return _ServiceMeters(self, name)


@final
class _ServiceMeters:
    def __init__(self, metrics: ParticipantMetrics, service: str) -> None:
        self._metrics = metrics
        self._service = service
        self._queue = routes.address(metrics.namespace, routes.commands_queue(service))
        self._consumed = metrics.consumed.cell(
            service,
            {
                MESSAGING_SYSTEM: RABBITMQ,
                MESSAGING_OPERATION_NAME: "process",
                MESSAGING_DESTINATION_NAME: self._queue,
            },
        )
        # command -> outcome -> (its count, its durations), made on first use.
        self._outcomes: dict[str, dict[str, tuple[Cell, Recorder]]] = {}
        self._sent: dict[str, Cell] = {}

    def consumed(self) -> None:
        self._consumed.value += 1

    def dead_lettered(self, reason: str) -> None:
        self._metrics.dead_letters.cell(
            (self._service, reason),
            {MESSAGING_DESTINATION_NAME: self._queue, DEAD_LETTER_REASON: reason},
        ).value += 1

    def handled(self, command: str, reply: Reply, seconds: float) -> None:
        if isinstance(reply, TaskCompleted):
            outcome = "completed"
        else:
            outcome = "failed" if reply.retryable else "rejected"
        cell, durations = self._outcome(command, outcome)
        cell.value += 1
        durations.record(seconds)

    def answered(self, command: str, outcome: str) -> None:
        self._outcome(command, outcome)[0].value += 1

    def _outcome(self, command: str, outcome: str) -> tuple[Cell, Recorder]:
        by_outcome = self._outcomes.get(command)
        if by_outcome is None:
            by_outcome = self._outcomes[command] = {}
        found = by_outcome.get(outcome)
        if found is None:
            attributes = {SERVICE: self._service, COMMAND: command, COMMAND_OUTCOME: outcome}
            key = (self._service, command, outcome)
            cell = self._metrics.commands.cell(key, attributes)
            found = by_outcome[outcome] = (cell, self._metrics.duration.cell(key, attributes))
        return found

    def sent(self, routing_key: str) -> None:
        cell = self._sent.get(routing_key)
        if cell is None:
            exchange = routes.address(self._metrics.namespace, "events")
            cell = self._sent[routing_key] = self._metrics.sent.cell(
                routing_key,
                {
                    MESSAGING_SYSTEM: RABBITMQ,
                    MESSAGING_OPERATION_NAME: "publish",
                    MESSAGING_DESTINATION_NAME: f"{exchange}:{routing_key}",
                },
            )
        cell.value += 1
