"""Errors of the RabbitMQ transport: ``TopologyMismatchError`` here; ``UnroutableError``
and ``PublishFailedError`` come from ``coordinator._errors``. All sit directly under
``SagaError``; the whole tree is drawn once, in the docstring of ``contracts._errors``.
"""

from __future__ import annotations

from typing import Final

import aiormq

from contracts import SagaError
from coordinator._errors import PublishFailedError, UnroutableError

__all__ = ["CHANNEL_ERRORS", "PublishFailedError", "TopologyMismatchError", "UnroutableError"]

# What aio-pika raises when a channel or connection is closed, closing, or
# refused the operation: the broker requeues what that channel held.
CHANNEL_ERRORS: Final = (
    aiormq.exceptions.ChannelInvalidStateError,
    aiormq.exceptions.AMQPError,
    ConnectionError,
)


class TopologyMismatchError(SagaError):
    """A queue or exchange already exists with other arguments.

    Typically another ``delivery_limit`` in the same namespace, or a queue
    declared by hand. RabbitMQ cannot change a queue's arguments: delete the
    queue (after draining it), or use the same settings everywhere.
    """

    retryable = False
