"""What one saga's trace must look like, checked on the spans a collector received.

A saga's spans are found by the saga id they carry (``saga.id``); the caller's
own spans (the application that started or signalled the saga) are passed in
separately. `incomplete` says what is still on its way (the exporters send in
batches, children before parents); `check_saga` lists every broken promise of
the tracing plan (docs in the README's "Tracing" section), one line each.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from otlp import Span

from contracts import routes

COORDINATOR = "saga-coordinator"
PARTICIPANT = "saga-participant"
SAGA_ID = "saga.id"
MESSAGE_ID = "messaging.message.id"
DESTINATION = "messaging.destination.name"
ROUTING_KEY = "messaging.rabbitmq.destination.routing_key"


def of_saga(spans: Iterable[Span], saga_id: str) -> list[Span]:
    """The spans that say they are the saga's."""
    return [s for s in spans if s.attributes.get(SAGA_ID) == saga_id]


def _is_root(span: Span, name: str) -> bool:
    return span.service == COORDINATOR and span.name == f"start {name}"


def _is_transition(span: Span) -> bool:
    """A coordinator span a message is processed in."""
    return span.service == COORDINATOR and span.kind == "CONSUMER"


# The first word of a decision span made by a timer (``TimerKey.kind``).
TIMER_KINDS = frozenset({"timeout", "retry", "deadline", "wait"})


def _is_decision(span: Span, by_id: Mapping[str, Span]) -> bool:
    """A coordinator's decision: below the processing of a message, or, for an
    input that is no message (a timer, a call in the coordinator's process),
    right below the saga's root."""
    if span.service != COORDINATOR or span.kind != "INTERNAL":
        return False
    parent = by_id.get(span.parent_id)
    return parent is not None and (_is_transition(parent) or parent.name.startswith("start "))


def incomplete(spans: Sequence[Span], name: str, *, ended: bool = True) -> list[str]:
    """What the saga's trace still lacks (empty once it is all there).

    Every span's parent (but the root's), every link to a reply, a participant's
    processing for every command sent, and (``ended``) the ``end`` span.
    """
    ids = {s.span_id for s in spans}
    missing = []
    if not any(_is_root(s, name) for s in spans):
        missing.append(f"no start {name}")
    if ended and not any(s.name == f"end {name}" for s in spans):
        missing.append(f"no end {name}")
    for span in spans:
        if not _is_root(span, name) and span.parent_id not in ids:
            missing.append(f"the parent of {span}")
        linked = any(link.span_id == span.span_id for s in spans for link in s.links)
        if span.service == PARTICIPANT and span.kind == "PRODUCER" and not linked:
            missing.append(f"the coordinator's processing of {span}")
        handled = any(s.parent_id == span.span_id for s in spans)
        if span.name.startswith("send commands:") and not handled:
            missing.append(f"the participant's processing of {span}")
    return missing


class _Checker:
    def __init__(self, spans: Sequence[Span], saga_id: str, name: str) -> None:
        self.spans = spans
        self.saga_id = saga_id
        self.name = name
        self.by_id = {s.span_id: s for s in spans}
        self.problems: list[str] = []

    def fail(self, span: Span | None, what: str) -> None:
        self.problems.append(
            f"{self.saga_id}: {span}: {what}" if span else f"{self.saga_id}: {what}"
        )

    def expect(self, span: Span, key: str, want: Any) -> None:
        got = span.attributes.get(key)
        if got != want:
            self.fail(span, f"{key}={got!r}, expected {want!r}")

    def children(self, span: Span) -> list[Span]:
        return [s for s in self.spans if s.parent_id == span.span_id]

    def messaging(self, span: Span, operation: str, destination: str) -> None:
        self.expect(span, "messaging.system", "rabbitmq")
        self.expect(span, "messaging.operation.type", operation)
        self.expect(
            span, "messaging.operation.name", "publish" if operation == "send" else operation
        )
        self.expect(span, DESTINATION, destination)
        self.expect(span, SAGA_ID, self.saga_id)
        if not span.attributes.get(MESSAGE_ID):
            self.fail(span, "no messaging.message.id")

    def saga(self, span: Span, *, version: bool = True) -> None:
        self.expect(span, SAGA_ID, self.saga_id)
        self.expect(span, "saga.name", self.name)
        if version:
            self.expect(span, "saga.version", 1)


def check_saga(
    spans: Sequence[Span],
    saga_id: str,
    *,
    outcome: str,
    commands: Iterable[str],
    compensated: Iterable[str] = (),
    timers: int = 0,
    caller: Span | None = None,
    links: Mapping[str, Span] | None = None,
    name: str = "order.place",
) -> list[str]:
    """Every way the saga's spans break the plan.

    Args:
        outcome: How the saga ended (``end`` span: ``saga.outcome``, status).
        commands: ``step:kind:attempt`` of every command the participants handled.
        compensated: The steps whose compensation was sent.
        timers: How many timers fired for it (retry backoffs, timeouts).
        caller: The span the saga was started in, if any: the root's parent.
        links: Message id -> the caller's span it was sent in: the processing
            of that message links to it (and the processing of any other
            message but a reply links to nothing).
    """
    c = _Checker(spans, saga_id, name)
    traces = Counter(s.trace_id for s in spans)
    if len(traces) != 1:
        c.fail(None, f"spans in {len(traces)} traces: {dict(traces)}")
    services = {s.service for s in spans}
    if services != {COORDINATOR, PARTICIPANT}:
        c.fail(None, f"spans from {sorted(services)}, expected {COORDINATOR} and {PARTICIPANT}")

    roots = [s for s in spans if _is_root(s, name)]
    if len(roots) != 1:
        c.fail(None, f"{len(roots)} root spans: {[str(r) for r in roots]}")
        return c.problems
    root = roots[0]
    _check_root(c, root, caller)
    for span in spans:
        if span is not root and span.parent_id not in c.by_id:
            c.fail(span, "its parent is not in the saga's trace")

    transitions = [s for s in spans if _is_transition(s)]
    for span in transitions:
        _check_transition(c, span, root, links or {})
    _check_timers(c, root, timers)

    for span in spans:
        if span.service == COORDINATOR and span.kind == "PRODUCER":
            _check_send(c, span)
        elif span.service == PARTICIPANT and span.kind == "PRODUCER":
            _check_reply(c, span)
    handled = Counter(
        f"{s.attributes.get('saga.step')}:{s.attributes.get('saga.kind')}:{s.attributes.get('saga.attempt')}"
        for s in spans
        if s.service == PARTICIPANT and s.kind == "CONSUMER"
    )
    if handled != Counter(commands):
        c.fail(
            None, f"participants handled {sorted(handled.elements())}, expected {sorted(commands)}"
        )

    _check_outcome(c, outcome, set(compensated))
    return c.problems


def _check_timers(c: _Checker, root: Span, timers: int) -> None:
    """A timer's decision is right below the root: no message brought it."""
    fired = [
        s
        for s in c.children(root)
        if s.kind == "INTERNAL" and s.name.partition(" ")[0] in TIMER_KINDS
    ]
    if len(fired) != timers:
        c.fail(None, f"{len(fired)} timer decisions, expected {timers}")
    for span in fired:
        c.saga(span)
        if span.links:
            c.fail(span, "a timer's decision links to nothing: no message brought it")


def _check_root(c: _Checker, root: Span, caller: Span | None) -> None:
    if root.kind != "INTERNAL":
        c.fail(root, f"kind {root.kind}, expected INTERNAL")
    c.saga(root)
    if caller is None:
        if root.parent_id:
            c.fail(root, "has a parent, but the saga was started outside any span")
    else:
        if (root.trace_id, root.parent_id) != (caller.trace_id, caller.span_id):
            c.fail(root, f"is not a child of the caller's span {caller}")


def _check_transition(c: _Checker, span: Span, root: Span, links: Mapping[str, Span]) -> None:
    """A coordinator's processing of an input: a child of the stored root context,
    linked to the context the message was sent in."""
    if span.parent_id != root.span_id or span.trace_id != root.trace_id:
        c.fail(span, "is not a child of the saga's root span")
    c.saga(span)
    decisions = [s for s in c.children(span) if s.kind == "INTERNAL"]
    if len(decisions) != 1:
        c.fail(span, f"{len(decisions)} decision spans below it: {[str(s) for s in decisions]}")
    for decision in decisions:
        c.saga(decision)
        if "saga.status" not in decision.attributes or "saga.transition" not in decision.events:
            c.fail(decision, "no saga.status or no saga.transition event")
    if span.name != "process coordinator.events":
        c.fail(span, "expected the name process coordinator.events")
    c.messaging(span, "process", "coordinator.events")
    message_id = str(span.attributes.get(MESSAGE_ID, ""))
    targets = [c.by_id.get(link.span_id) for link in span.links]
    if message_id.endswith(":reply"):
        # Linked to the participant's send span of that very reply.
        ok = (
            len(targets) == 1
            and targets[0] is not None
            and targets[0].service == PARTICIPANT
            and targets[0].kind == "PRODUCER"
            and targets[0].attributes.get(MESSAGE_ID) == message_id
            and span.links[0].trace_id == span.trace_id
        )
        if not ok:
            c.fail(span, f"links {span.links}: expected one, to the reply's send span")
        return
    sender = links.get(message_id)
    want = [] if sender is None else [(sender.trace_id, sender.span_id)]
    got = [(link.trace_id, link.span_id) for link in span.links]
    if got != want:
        c.fail(span, f"links {got}, expected {want} (the context {message_id} was sent in)")


def _check_send(c: _Checker, span: Span) -> None:
    """A command or lifecycle event published by the coordinator."""
    destination = str(span.attributes.get(DESTINATION, ""))
    exchange, _, key = destination.partition(":")
    if span.name != f"send {destination}" or exchange not in ("commands", "lifecycle"):
        c.fail(span, f"a coordinator send named {span.name!r} to {destination!r}")
    c.messaging(span, "send", destination)
    c.expect(span, ROUTING_KEY, key)
    c.expect(span, SAGA_ID, c.saga_id)
    parent = c.by_id.get(span.parent_id)
    if parent is None or not _is_decision(parent, c.by_id):
        c.fail(span, "not sent in the decision that made it")
    if exchange != "commands":
        return
    message_id = str(span.attributes.get(MESSAGE_ID))
    handled = c.children(span)
    if len(handled) != 1:
        c.fail(span, f"handled {len(handled)} times: {[str(s) for s in handled]}")
    for process in handled:
        _check_processing(c, process, span, message_id, key)


def _check_processing(c: _Checker, span: Span, sent: Span, message_id: str, key: str) -> None:
    """A participant's processing of a command: a child of its send span."""
    service = key.partition(".")[0]
    if (span.service, span.kind, span.name) != (
        PARTICIPANT,
        "CONSUMER",
        f"process {service}.commands",
    ):
        c.fail(span, f"expected a participant's process {service}.commands")
    c.messaging(span, "process", f"{service}.commands")
    c.expect(span, MESSAGE_ID, message_id)
    c.expect(span, ROUTING_KEY, key)
    c.saga(span)
    # The command's message id is {saga}:{step}:{kind}:{attempt}.
    step, kind, attempt = message_id.removeprefix(f"{c.saga_id}:").split(":")
    c.expect(span, "saga.step", step)
    c.expect(span, "saga.kind", kind)
    c.expect(span, "saga.attempt", int(attempt))
    replies = [s for s in c.children(span) if s.kind == "PRODUCER"]
    if len(replies) != 1:
        c.fail(span, f"{len(replies)} replies sent: {[str(s) for s in replies]}")
        return
    failed = replies[0].name.endswith(".TaskFailed")
    if failed != (span.status == "ERROR") or failed != ("error.type" in span.attributes):
        c.fail(
            span,
            f"status {span.status}, error.type {span.attributes.get('error.type')!r}, "
            f"but the reply was {replies[0].name}",
        )


def _check_reply(c: _Checker, span: Span) -> None:
    """A participant's reply: a child of its processing, the processing of it links here."""
    parent = c.by_id.get(span.parent_id)
    service = "?"
    if parent is None or parent.service != PARTICIPANT or parent.kind != "CONSUMER":
        c.fail(span, "a reply not sent from the processing of its command")
    else:
        c.expect(span, MESSAGE_ID, f"{parent.attributes.get(MESSAGE_ID)}:reply")
        # The processing span is named after the queue: process {service}.commands.
        service = parent.name.removeprefix("process ").removesuffix(".commands")
    key = routes.reply_key(service, c.name, span.name.rpartition(".")[2])
    if span.name != f"send events:{key}":
        c.fail(span, f"a reply named {span.name!r}")
    c.messaging(span, "send", f"events:{key}")
    c.expect(span, ROUTING_KEY, key)
    processed = [s for s in c.spans if any(link.span_id == span.span_id for link in s.links)]
    if len(processed) != 1:
        c.fail(span, f"processed {len(processed)} times by the coordinator")


def _check_outcome(c: _Checker, outcome: str, compensated: set[str]) -> None:
    ends = [s for s in c.spans if s.name == f"end {c.name}"]
    if len(ends) != 1:
        c.fail(None, f"{len(ends)} end spans")
    for end in ends:
        c.saga(end)
        c.expect(end, "saga.outcome", outcome)
        want = ("UNSET", "") if outcome == "completed" else ("ERROR", f"saga_{outcome}")
        if (end.status, end.status_message) != want:
            c.fail(end, f"status {end.status} {end.status_message!r}, expected {want}")
        if outcome != "completed":
            c.expect(end, "error.type", f"saga_{outcome}")
        decision = c.by_id.get(end.parent_id)
        if decision is None or not _is_decision(decision, c.by_id):
            c.fail(end, "not a child of the decision that ended the saga")
    compensations = [s for s in c.spans if s.name.startswith(f"compensate {c.name}.")]
    steps = {str(s.attributes.get("saga.step")) for s in compensations}
    if steps != compensated or len(compensations) != len(compensated):
        c.fail(
            None,
            f"compensate spans for {sorted(s.name for s in compensations)}, "
            f"expected one for each of {sorted(compensated)}",
        )
    for span in compensations:
        c.saga(span)
        c.expect(span, "saga.kind", "compensation")
        if span.name != f"compensate {c.name}.{span.attributes.get('saga.step')}":
            c.fail(span, "named after another step than its saga.step")
        # The compensation's command went out in the same decision.
        decision = c.by_id.get(span.parent_id)
        step, attempt = span.attributes.get("saga.step"), span.attributes.get("saga.attempt")
        sent = [
            s
            for s in c.spans
            if decision is not None
            and s.parent_id == decision.span_id
            and s.attributes.get(MESSAGE_ID) == f"{c.saga_id}:{step}:compensation:{attempt}"
        ]
        if len(sent) != 1:
            c.fail(span, "its command was not sent by the same decision")
