"""The coordinator's metrics: what each committed transition did, counted.

Every number comes from the decision the runtime committed (the state before
and after, the input, the effects), so a transition costs no extra I/O. Counts
are cells (``_cells``): a transition mostly adds 1 to an integer it already
holds. Durations are histograms of our own (``_histograms``), recorded only
when a saga ends or a step settles. Counts that live in Redis (active sagas,
parked sagas, the outbox) are not counted here but sampled from the store
(``_sampler``).

Labels are saga names, step names, services, outcomes and reasons: all bounded
by the definitions. A saga id is never one.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final, final

from opentelemetry.metrics import Meter
from opentelemetry.semconv._incubating.attributes.messaging_attributes import (
    MESSAGING_DESTINATION_NAME,
    MESSAGING_OPERATION_NAME,
    MESSAGING_SYSTEM,
    MessagingSystemValues,
)
from opentelemetry.semconv._incubating.metrics.messaging_metrics import (
    MESSAGING_CLIENT_CONSUMED_MESSAGES,
    MESSAGING_CLIENT_SENT_MESSAGES,
)

from contracts import routes
from coordinator.core import (
    Decision,
    Dispatch,
    Input,
    SagaDefinition,
    SagaState,
    Start,
    StepCompleted,
    StepState,
    TimerFired,
    TimerKey,
)
from coordinator.ports import OutboxEntry, SagaCounts
from coordinator.telemetry._cells import Cell, CounterCells, GaugeValues
from coordinator.telemetry._histograms import HistogramCells, Recorder

__all__ = ["SECONDS_BUCKETS", "SagaMetrics"]

SECONDS_BUCKETS: Final = (
    *(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5),
    *(1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0),
    *(3600.0, 7200.0, 14400.0, 43200.0, 86400.0),
)
"""Histogram bounds from 1 ms to 1 day: a step takes milliseconds, a saga that waits
for a person takes hours (the SDK's default bounds stop at 10 s)."""

SAGA_NAME = "saga.name"
SAGA_OUTCOME = "saga.outcome"
SAGA_STATUS = "saga.status"
STEP_NAME = "saga.step.name"
STEP_KIND = "saga.step.kind"
STEP_OUTCOME = "saga.step.outcome"
SERVICE = "saga.service"
BREAKER_STATE = "saga.circuit_breaker.state"
TIMEOUT_KIND = "saga.timeout.kind"
DEAD_LETTER_REASON = "saga.dead_letter.reason"
RABBITMQ = MessagingSystemValues.RABBITMQ.value
BREAKER_STATES: Final = ("closed", "open", "half-open")

# Step statuses a settling step leaves, and what it settles as.
_ACTION_OUT = frozenset({"dispatched", "retrying", "awaiting_service"})
_ACTION_ENDS = {"succeeded": "succeeded", "failed": "failed", "timed_out": "timed_out"}
_UNDO_OUT = frozenset({"compensating", "compensation_awaiting_service"})
_UNDO_ENDS = {"compensated": "compensated", "compensation_failed": "failed"}
# A step that owes its undo, and the statuses its compensation begins in.
_OWING = frozenset({"succeeded", "timed_out"})
_UNDO_BEGINS = frozenset({"compensating", "compensation_awaiting_service", "compensation_failed"})
_TERMINAL = SagaState.TERMINAL
_NO_STEPS: dict[str, StepState] = {}
_TIMEOUT_KINDS = {"timeout": "step", "wait": "wait", "deadline": "deadline"}


def _histogram(meter: Meter, name: str, description: str) -> HistogramCells[Any]:
    return HistogramCells(meter, name, unit="s", description=description, bounds=SECONDS_BUCKETS)


@final
class _Step:
    """The attribute sets of one step of one saga, made on its first use."""

    __slots__ = ("action", "compensation", "compensations", "name", "retries", "saga", "timeouts")

    def __init__(self, metrics: SagaMetrics, saga: str, step: str) -> None:
        self.saga, self.name = saga, step
        base = {SAGA_NAME: saga, STEP_NAME: step}
        durations = metrics._step_duration
        self.action: dict[str, Recorder] = {
            outcome: durations.cell(
                (saga, step, "action", outcome),
                {**base, STEP_KIND: "action", STEP_OUTCOME: outcome},
            )
            for outcome in _ACTION_ENDS.values()
        }
        self.compensation: dict[str, Recorder] = {
            outcome: durations.cell(
                (saga, step, "compensation", outcome),
                {**base, STEP_KIND: "compensation", STEP_OUTCOME: outcome},
            )
            for outcome in _UNDO_ENDS.values()
        }
        self.retries = {
            kind: metrics._retries.cell((saga, step, kind), {**base, STEP_KIND: kind})
            for kind in ("action", "compensation")
        }
        self.compensations = metrics._compensations.cell((saga, step), base)
        self.timeouts = {
            kind: metrics._timeouts.cell((saga, step, kind), {**base, TIMEOUT_KIND: kind})
            for kind in ("step", "wait")
        }


@final
class _Saga:
    """The cells and attribute sets of one saga definition, made on its first transition."""

    __slots__ = ("deadline", "durations", "finished", "name", "started", "steps")

    def __init__(self, metrics: SagaMetrics, name: str) -> None:
        self.name = name
        self.started = metrics._started.cell(name, {SAGA_NAME: name})
        outcomes = {status: {SAGA_NAME: name, SAGA_OUTCOME: status} for status in _TERMINAL}
        self.finished = {
            status: metrics._finished.cell((name, status), attrs)
            for status, attrs in outcomes.items()
        }
        self.durations: dict[str, Recorder] = {
            status: metrics._run_duration.cell((name, status), attrs)
            for status, attrs in outcomes.items()
        }
        self.deadline = metrics._timeouts.cell(
            (name, "", "deadline"), {SAGA_NAME: name, TIMEOUT_KIND: "deadline"}
        )
        self.steps: dict[str, _Step] = {}


@final
class SagaMetrics:
    """Implements ``Instruments`` on an OpenTelemetry ``Meter``: the coordinator's metrics.

    Args:
        meter: Where the instruments are made.
        namespace: The deployment's namespace, for the broker names of exchanges
            and queues in the messaging metrics.
    """

    def __init__(self, meter: Meter, *, namespace: str = routes.DEFAULT_NAMESPACE) -> None:
        self._namespace = namespace
        self._started: CounterCells[str] = CounterCells(
            meter, "saga.run.started", unit="{saga}", description="Sagas started."
        )
        self._finished: CounterCells[tuple[str, str]] = CounterCells(
            meter,
            "saga.run.finished",
            unit="{saga}",
            description="Sagas that reached a final status (again, after an operator's retry).",
        )
        self._run_duration = _histogram(
            meter, "saga.run.duration", "From a saga's start to its final status."
        )
        self._step_duration = _histogram(
            meter,
            "saga.step.duration",
            "From a step's first attempt (of its action, or of its compensation) to its "
            "settling, retries, backoffs and parked time included.",
        )
        self._retries: CounterCells[tuple[str, str, str]] = CounterCells(
            meter, "saga.step.retries", unit="{retry}", description="Attempts after a step's first."
        )
        self._compensations: CounterCells[tuple[str, str]] = CounterCells(
            meter,
            "saga.step.compensations",
            unit="{compensation}",
            description="Steps whose compensation began.",
        )
        self._timeouts: CounterCells[tuple[str, str, str]] = CounterCells(
            meter,
            "saga.timeouts",
            unit="{timeout}",
            description="Timeouts that took effect: a step's attempt, a wait, a saga's deadline.",
        )
        self._lag = _histogram(
            meter, "saga.timer.lag", "How long after its due time a timer fired."
        ).cell((), {})
        self._dead_letters: CounterCells[tuple[str, str]] = CounterCells(
            meter, "saga.dead_letters", unit="{message}", description="Messages dead-lettered."
        )
        self._sent: CounterCells[tuple[str, str]] = CounterCells(
            meter,
            MESSAGING_CLIENT_SENT_MESSAGES,
            unit="{message}",
            description="Number of messages producer attempted to send to the broker.",
        )
        self._consumed: CounterCells[str] = CounterCells(
            meter,
            MESSAGING_CLIENT_CONSUMED_MESSAGES,
            unit="{message}",
            description="Number of messages that were delivered to the application.",
        )
        self._transitions: CounterCells[tuple[str, str]] = CounterCells(
            meter,
            "saga.circuit_breaker.transitions",
            unit="{transition}",
            description="Breaker state changes this replica saw, by the state entered.",
        )
        self._breaker_state = GaugeValues(
            meter,
            "saga.circuit_breaker.state",
            unit="1",
            description="1 for the state each service's breaker is in, 0 for the others.",
        )
        self._active = GaugeValues(
            meter, "saga.run.active", unit="{saga}", description="Sagas not finished, by status."
        )
        self._parked = GaugeValues(
            meter,
            "saga.run.parked",
            unit="{saga}",
            description="Sagas waiting for a service's breaker to let their command out.",
        )
        self._backlog = GaugeValues(
            meter,
            "saga.outbox.backlog",
            unit="{message}",
            description="Messages committed and not yet marked published.",
        )
        self._sagas: dict[str, _Saga] = {}
        self._sent_by: dict[str, dict[str, Cell]] = {}
        self._consumed_by: dict[str, Cell] = {}
        self._breakers: dict[str, str] = {}

    # -- one transition ------------------------------------------------------------

    def decided(
        self,
        definition: SagaDefinition[Any],
        before: SagaState[Any] | None,
        inp: Input | Start[Any],
        decision: Decision[Any],
    ) -> None:
        """Count what one committed decision did (an unchanged one did nothing)."""
        if not decision.changed:
            return
        state = decision.state
        saga = self._sagas.get(state.name)
        if saga is None:
            saga = self._sagas[state.name] = _Saga(self, state.name)
        if before is None:
            saga.started.value += 1
            old_steps = _NO_STEPS
        else:
            old_steps = before.steps
        for name, st in state.steps.items():
            old = old_steps.get(name)
            # Unchanged steps are the very objects of the state before: one identity check.
            if old is not st and (old is None or old.status != st.status):
                self._step_moved(saga, name, old, st, state, inp)
        if state.status in _TERMINAL and (before is None or before.status not in _TERMINAL):
            saga.finished[state.status].value += 1
            seconds = _seconds(state.started_at, state.finished_at or state.updated_at)
            saga.durations[state.status].record(seconds)
        for effect in decision.effects:
            if type(effect) is Dispatch and effect.attempt > 1:
                self._step(saga, effect.step).retries[effect.kind].value += 1
        if type(inp) is TimerFired:
            self._timed_out(saga, inp.timer)

    def _step(self, saga: _Saga, name: str) -> _Step:
        step = saga.steps.get(name)
        if step is None:
            step = saga.steps[name] = _Step(self, saga.name, name)
        return step

    def _step_moved(
        self,
        saga: _Saga,
        name: str,
        old: StepState | None,
        st: StepState,
        state: SagaState[Any],
        inp: Input | Start[Any],
    ) -> None:
        was = "pending" if old is None else old.status
        new = st.status
        if was in _ACTION_OUT:
            if new in _ACTION_ENDS:
                durations = self._step(saga, name).action[_ACTION_ENDS[new]]
            elif new in _UNDO_BEGINS:
                # It settled and its undo began in one input: the status it settled in
                # is gone. A success clears the error; giving up (unknown) sets it.
                step = self._step(saga, name)
                step.compensations.value += 1
                succeeded = st.error is None or (
                    type(inp) is StepCompleted and inp.step == name and inp.kind == "action"
                )
                durations = step.action["succeeded" if succeeded else "timed_out"]
            else:
                return  # still out: retrying, parked, sent again
        elif was in _UNDO_OUT and new in _UNDO_ENDS:
            durations = self._step(saga, name).compensation[_UNDO_ENDS[new]]
        else:
            if was in _OWING and new in _UNDO_BEGINS:
                self._step(saga, name).compensations.value += 1
            return
        # The time of the first attempt before this input: an undo that began with it
        # has just set its own.
        sent = None if old is None else old.dispatched_at
        if sent is not None:  # None: it settled without being sent (parked)
            durations.record(_seconds(sent, state.updated_at))

    def _timed_out(self, saga: _Saga, timer: str) -> None:
        key = TimerKey.parse(timer)
        kind = None if key is None else _TIMEOUT_KINDS.get(key.kind)
        if key is None or kind is None:
            return  # a retry's backoff ended: no timeout
        if kind == "deadline":
            saga.deadline.value += 1
        else:
            self._step(saga, key.step).timeouts[kind].value += 1

    # -- the rest of the runtime's reports ----------------------------------------------

    def timer_fired(self, lag: timedelta) -> None:
        self._lag.record(max(lag.total_seconds(), 0.0))

    def dead_lettered(self, queue: str, reason: str) -> None:
        destination = routes.address(self._namespace, queue)
        self._dead_letters.cell(
            (queue, reason), {MESSAGING_DESTINATION_NAME: destination, DEAD_LETTER_REASON: reason}
        ).value += 1

    def sent(self, entry: OutboxEntry) -> None:
        by_key = self._sent_by.get(entry.exchange)
        if by_key is None:
            by_key = self._sent_by[entry.exchange] = {}
        cell = by_key.get(entry.routing_key)
        if cell is None:
            exchange = routes.address(self._namespace, entry.exchange)
            cell = by_key[entry.routing_key] = self._sent.cell(
                (entry.exchange, entry.routing_key),
                {
                    MESSAGING_SYSTEM: RABBITMQ,
                    MESSAGING_OPERATION_NAME: "publish",
                    MESSAGING_DESTINATION_NAME: f"{exchange}:{entry.routing_key}",
                },
            )
        cell.value += 1

    def consumed(self, queue: str) -> None:
        cell = self._consumed_by.get(queue)
        if cell is None:
            cell = self._consumed_by[queue] = self._consumed.cell(
                queue,
                {
                    MESSAGING_SYSTEM: RABBITMQ,
                    MESSAGING_OPERATION_NAME: "process",
                    MESSAGING_DESTINATION_NAME: routes.address(self._namespace, queue),
                },
            )
        cell.value += 1

    def breaker_changed(self, service: str, old: str | None, new: str) -> None:
        if old is not None and old != new:
            self._transitions.cell(
                (service, new), {SERVICE: service, BREAKER_STATE: new}
            ).value += 1
        if self._breakers.get(service) != new:
            self._breakers[service] = new
            self._breaker_state.set(
                (int(state == current), {SERVICE: name, BREAKER_STATE: state})
                for name, current in sorted(self._breakers.items())
                for state in BREAKER_STATES
            )

    # -- counts sampled from the store --------------------------------------------------

    def sampled(self, counts: SagaCounts) -> None:
        """Report the counts the sampler read from the store (``_sampler``)."""
        self._active.set(
            (n, {SAGA_NAME: name, SAGA_STATUS: status})
            for name, by_status in sorted(counts.by_status.items())
            for status, n in sorted(by_status.items())
        )
        self._parked.set((n, {SERVICE: service}) for service, n in sorted(counts.parked.items()))
        self._backlog.set([(counts.outbox, {})])


def _seconds(start: datetime, end: datetime) -> float:
    # Clamped: replicas stamp times on one shared clock, but a skew must not go negative.
    return max((end - start).total_seconds(), 0.0)
