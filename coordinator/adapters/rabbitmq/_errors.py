"""Errors of the RabbitMQ transport, directly under ``SagaError``::

SagaError
└── TopologyMismatchError   a queue or exchange exists with other arguments

It also raises the coordinator's ``UnroutableError`` and ``PublishFailedError``
(``coordinator._errors``, exported by ``coordinator``), as the in-memory
transport does.
"""

from __future__ import annotations

from typing import Final

import aiormq

from contracts import SagaError

__all__ = ["CHANNEL_ERRORS", "TopologyMismatchError"]

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
