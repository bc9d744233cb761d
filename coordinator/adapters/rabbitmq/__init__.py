"""RabbitMQ adapter: the ``Transport`` and ``DeadLetters`` ports on quorum queues, with aio-pika.

It passes the same contract suites as ``coordinator.adapters.memory``. The
topology it declares (namespaced exchanges, quorum queues with a delivery
limit and a dead-letter exchange, a dead-letter queue per queue) is exported by
`definitions` for ``rabbitmqctl import_definitions``.
"""

from contracts._public import show_as_public
from coordinator.adapters.rabbitmq._admin import RabbitDeadLetters
from coordinator.adapters.rabbitmq._errors import TopologyMismatchError
from coordinator.adapters.rabbitmq._topology import definitions
from coordinator.adapters.rabbitmq._transport import RabbitTransport, user_of
from coordinator.adapters.rabbitmq._users import user_definitions

__all__ = [
    "RabbitDeadLetters",
    "RabbitTransport",
    "TopologyMismatchError",
    "definitions",
    "user_definitions",
    "user_of",
]

show_as_public(__name__, globals(), __all__)
