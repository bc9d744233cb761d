"""Retry policy and deterministic backoff.

Jitter is drawn from a hash of the saga id, step and attempt instead of a random
generator, so replaying a saga's history against its definition schedules the
same timers at the same instants.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

__all__ = ["Retry"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Retry:
    """How often, and how patiently, a step is tried.

    Attributes:
        attempts: Total attempts, the first included. ``1`` means no retry.
        backoff: Delay before the second attempt.
        multiplier: Growth of the delay per further attempt.
        max_backoff: Cap on any single delay.
        jitter: Fraction of the delay added or removed at random (0 to 1).
        give_up_on: Error types (names, or exception classes whose name is used)
            that end the step at once, whatever ``attempts`` says; kept as names.
    """

    attempts: int = 1
    backoff: timedelta = timedelta(seconds=1)
    multiplier: float = 2.0
    max_backoff: timedelta = timedelta(minutes=1)
    jitter: float = 0.1
    give_up_on: Iterable[str | type[BaseException]] = frozenset()

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(
                f"Retry(attempts={self.attempts}): attempts counts the first try, so >= 1"
            )
        if self.backoff < timedelta(0) or self.max_backoff < self.backoff:
            raise ValueError("Retry: need 0 <= backoff <= max_backoff")
        if self.multiplier < 1.0:
            raise ValueError(f"Retry(multiplier={self.multiplier}): must be >= 1")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"Retry(jitter={self.jitter}): must be between 0 and 1")
        names = frozenset(g if isinstance(g, str) else g.__name__ for g in self.give_up_on)
        object.__setattr__(self, "give_up_on", names)

    def allows(self, attempt: int, *, error_type: str | None, retryable: bool) -> bool:
        """Whether another attempt follows a failed ``attempt``."""
        if not retryable or (error_type is not None and error_type in self.give_up_on):
            return False
        return attempt < self.attempts

    def delay(self, attempt: int, *, seed: str) -> timedelta:
        """Delay between a failed ``attempt`` and the next one."""
        base = self.backoff.total_seconds() * self.multiplier ** (attempt - 1)
        base = min(base, self.max_backoff.total_seconds())
        digest = hashlib.blake2b(f"{seed}:{attempt}".encode(), digest_size=8).digest()
        unit = int.from_bytes(digest, "big") / 2**64
        seconds = base * (1.0 + self.jitter * (2.0 * unit - 1.0))
        return timedelta(seconds=min(seconds, self.max_backoff.total_seconds()))
