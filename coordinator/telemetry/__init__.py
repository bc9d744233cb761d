"""What the coordinator and the participants tell the outside world: OpenTelemetry
traces (one per saga) and metrics.

The runtime talks to one :class:`Telemetry`; without a tracer or metrics it does
nothing, so a process that configured neither spends almost nothing on it.
:class:`SagaMetrics` are the coordinator's metrics, :class:`StoreSampler` reads
the counts that live in the store for them, :class:`ParticipantMetrics` are a
participant process's.
"""

from contracts._public import show_as_public
from coordinator.telemetry._metrics import SECONDS_BUCKETS, SagaMetrics
from coordinator.telemetry._participant_metrics import NO_METERS, ParticipantMetrics, ServiceMeters
from coordinator.telemetry._participant_spans import ServiceTracer
from coordinator.telemetry._sampler import ACTIVE_STATUSES, StoreSampler
from coordinator.telemetry._scope import SagaScope, current_saga
from coordinator.telemetry._setup import shutdown_tracing, tracer_from_environment
from coordinator.telemetry._telemetry import Instruments, SpanMaker, Telemetry
from coordinator.telemetry._tracing import SagaTracer, TraceMode

__all__ = [
    "ACTIVE_STATUSES",
    "NO_METERS",
    "SECONDS_BUCKETS",
    "current_saga",
    "Instruments",
    "ParticipantMetrics",
    "SagaMetrics",
    "SagaScope",
    "SagaTracer",
    "ServiceMeters",
    "ServiceTracer",
    "shutdown_tracing",
    "SpanMaker",
    "StoreSampler",
    "Telemetry",
    "TraceMode",
    "tracer_from_environment",
]

show_as_public(__name__, globals(), __all__)
