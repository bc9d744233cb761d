"""Timer names: what a timer is for, and the string it is stored under.

The timer store keys timers by name and hands the name back in ``TimerFired``, so
the format is stored: sagas in flight hold timers under these names across an
upgrade, and it must not change. :class:`TimerKey` is the one place that writes a
name and the one place that reads it back.

=========  ==================================  ================================
kind       stored name                         falls due when
=========  ==================================  ================================
deadline   ``deadline``                        the whole saga ran out of time
wait       ``wait:{step}``                     a wait had no signal in time
timeout    ``timeout:{step}:{kind}:{attempt}``  one attempt had no reply in time
retry      ``retry:{step}:{kind}:{attempt}``    attempt ``attempt`` may be sent
=========  ==================================  ================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from contracts import StepKind

__all__ = ["TimerKey", "TimerKind"]

TimerKind = Literal["deadline", "wait", "timeout", "retry"]
_STEP_KINDS: frozenset[str] = frozenset(get_args(StepKind))


@dataclass(frozen=True, slots=True)
class TimerKey:
    """One timer of a saga.

    Attributes:
        kind: What the timer is for (see the module's table).
        step: The step or wait it belongs to; empty for the deadline.
        step_kind: Whether it times or retries the action or the compensation.
        attempt: The attempt it belongs to, so a stale timer is recognised (a
            ``retry`` timer carries the attempt it will send).
    """

    kind: TimerKind
    step: str = ""
    step_kind: StepKind = "action"
    attempt: int = 0

    @classmethod
    def deadline(cls) -> TimerKey:
        return cls("deadline")

    @classmethod
    def wait(cls, step: str) -> TimerKey:
        return cls("wait", step)

    @classmethod
    def timeout(cls, step: str, step_kind: StepKind, attempt: int) -> TimerKey:
        return cls("timeout", step, step_kind, attempt)

    @classmethod
    def retry(cls, step: str, step_kind: StepKind, attempt: int) -> TimerKey:
        return cls("retry", step, step_kind, attempt)

    @property
    def name(self) -> str:
        """The name the timer is stored under."""
        if self.kind == "deadline":
            return "deadline"
        if self.kind == "wait":
            return f"wait:{self.step}"
        return f"{self.kind}:{self.step}:{self.step_kind}:{self.attempt}"

    @classmethod
    def parse(cls, name: str) -> TimerKey | None:
        """The key a stored name stands for, or ``None`` if the core never makes it."""
        if name == "deadline":
            return cls.deadline()
        prefix, _, rest = name.partition(":")
        if prefix == "wait":
            return cls.wait(rest)
        parts = rest.rsplit(":", 2)
        if prefix not in ("timeout", "retry") or len(parts) != 3:
            return None
        step, step_kind, attempt = parts
        if step_kind not in _STEP_KINDS or not (attempt.isascii() and attempt.isdigit()):
            return None
        kind: TimerKind = "timeout" if prefix == "timeout" else "retry"
        return cls(kind, step, "action" if step_kind == "action" else "compensation", int(attempt))
