"""Ours with tracing on: what exporting every span costs, and the whole configuration
users run.

``ours`` runs as ``saga run`` does by default: breakers on, metrics on
(``/metrics`` served, no scraper), tracing off (no ``OTEL_*`` variable).
``ours-traced`` also exports every span over OTLP/HTTP to a no-op receiver
(``bench.otlp_sink``, its CPU counted in the total as a collector's would be),
with the SDK's default sampler (every saga traced); the same endpoint makes the
processes push their metrics there too, every 60 s by the SDK's default.
``ours-full`` is that configuration with each of its parts pinned rather than
left to the defaults, and the default log level: the figure users will see.
"""

from __future__ import annotations

import socket
import sys

from bench._infra import launch, stop_procs
from bench._systems import Ours

__all__ = ["OursFull", "OursTraced"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class OursTraced(Ours):
    name = "ours-traced"
    _sink_port = 0

    def env(self) -> dict[str, str]:
        if not self._sink_port:
            self._sink_port = _free_port()
        endpoint = f"http://127.0.0.1:{self._sink_port}"
        return {**super().env(), "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}

    async def launch(self, *, participants: str | None = "all") -> None:
        self.env()  # picks the port
        argv = [sys.executable, "-m", "bench.otlp_sink", str(self._sink_port)]
        self.procs.append(launch("collector", argv, {}, f"{self.ns}-collector"))
        await super().launch(participants=participants)

    async def close(self) -> None:
        # The receiver stops last: the processes export what they hold as they stop,
        # and an export to a closed port is retried for seconds, then logged as an error.
        await stop_procs([p for p in self.procs if p.role != "collector"])
        await super().close()


class OursFull(OursTraced):
    """Breakers, metrics and tracing on, each set explicitly: a default that changes
    must not quietly change what this system measures."""

    name = "ours-full"

    def env(self) -> dict[str, str]:
        return {
            **super().env(),
            "SAGA_BREAKERS_ENABLED": "true",
            "SAGA_HTTP": "127.0.0.1:0",
            "SAGA_LOG_LEVEL": "INFO",  # the product's default; the hot path logs nothing there
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_TRACES_SAMPLER": "parentbased_always_on",
            "OTEL_SDK_DISABLED": "false",
        }
