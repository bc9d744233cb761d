"""Variants of `Ours` that turn one thing off or on, to measure what it costs."""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from typing import Any

from bench import saga3
from bench._infra import (
    BIN,
    launch,
)
from bench._systems import Ours
from contracts import LIFECYCLE_EVENTS
from coordinator.adapters.signing import Keyring, SigningTransport


class OursRawParticipant(Ours):
    """The real coordinator, answered by the floor's responder speaking our protocol.

    Isolates the coordinator: the participant side does nothing but decode,
    reply with confirms and ack (no idempotency records).
    """

    name = "ours-rawp"

    async def launch_participants(self, variant: str) -> None:
        hold = [] if variant == "all" else ["--hold-step", "2"]
        for i in range(self.cfg.participants):
            argv = [
                str(BIN / "python"),
                "-m",
                "bench.floor",
                "responder",
                "--ns",
                self.ns,
                "--amqp",
                self.cfg.amqp_url,
                "--protocol",
                "saga",
                "--loop",
                self.cfg.event_loop,
                *hold,
            ]
            self.procs.append(launch("participant", argv, {}, f"{self.ns}-responder{i}"))
        await self._wait_ready(self.cfg.participants)


class OursNoStarted(Ours):
    """Ours announcing outcomes only (``SAGA_ANNOUNCE`` without ``started``), like
    the floor, which announces nothing but the end: what the ``started`` event costs."""

    name = "ours-nostart"

    def env(self) -> dict[str, str]:
        outcomes = ",".join(sorted(LIFECYCLE_EVENTS - {"started"}))
        return {**super().env(), "SAGA_ANNOUNCE": outcomes}


class OursNoBreakers(Ours):
    """Ours with the circuit breakers off (``SAGA_BREAKERS_ENABLED=false``): what
    keeping a breaker per service costs on the hot path."""

    name = "ours-nobreakers"

    def env(self) -> dict[str, str]:
        return {**super().env(), "SAGA_BREAKERS_ENABLED": "false"}


class OursNoMetrics(Ours):
    """Ours without the HTTP server and its metrics (``SAGA_HTTP=off``): what the
    metrics cost on the hot path."""

    name = "ours-nometrics"

    def env(self) -> dict[str, str]:
        return {**super().env(), "SAGA_HTTP": "off"}


class OursSigned(Ours):
    """Ours with every message signed and verified (``SAGA_SIGNING_KEYS``): what
    HMAC-SHA256 on each command, reply, start and lifecycle event costs. The
    driver signs its starts with the operator's key, as the client does."""

    name = "ours-signed"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        keys = {
            f"{principal}:bench": secrets.token_urlsafe(32)
            for principal in (saga3.SERVICE, "operator", "coordinator")
        }
        self._keys = json.dumps({"keys": keys})
        operator = Keyring.of({"operator:bench": keys["operator:bench"]})
        # Only its ``sign`` is used: the driver publishes with aio-pika itself.
        self._signer = SigningTransport(_NoTransport(), operator, max_age=timedelta(hours=1))

    def env(self) -> dict[str, str]:
        return {**super().env(), "SAGA_SIGNING_KEYS": self._keys}

    def headers(self, body: bytes, message_id: str) -> dict[str, str]:
        return self._signer.sign("events", self.start_key, body, message_id)


class _NoTransport:
    async def publish(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError

    async def declare(self, *args: Any) -> None:
        raise NotImplementedError

    async def subscribe(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


class OursBaseline(Ours):
    """Ours from another source tree (``--baseline DIR``), to compare two versions
    in one run: ``git worktree add /tmp/base <commit>``, then
    ``--baseline /tmp/base``. The same venv, its code first on the path."""

    name = "ours-base"

    def env(self) -> dict[str, str]:
        return {**super().env(), "PYTHONPATH": self.cfg.baseline}
