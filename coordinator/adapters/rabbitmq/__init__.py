"""RabbitMQ adapter: the ``Transport`` port on quorum queues, with aio-pika.

It passes the same contract suite as ``coordinator.adapters.memory``. The
topology it declares (namespaced exchanges, quorum queues with a delivery
limit and a dead-letter exchange, a dead-letter queue per queue) is exported by
`definitions` for ``rabbitmqctl import_definitions``.
"""

from coordinator.adapters.rabbitmq._delivery import DeadLetter
from coordinator.adapters.rabbitmq._errors import (
    PublishFailedError,
    TopologyMismatchError,
    UnroutableError,
)
from coordinator.adapters.rabbitmq._topology import definitions
from coordinator.adapters.rabbitmq._transport import RabbitTransport

__all__ = [
    "DeadLetter",
    "PublishFailedError",
    "RabbitTransport",
    "TopologyMismatchError",
    "UnroutableError",
    "definitions",
]
