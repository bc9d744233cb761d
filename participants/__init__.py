"""Participant SDK: write a service's command handlers; the worker does the messaging.

Example:
    inventory = Service("inventory")

    @inventory.handles(Reserve)
    async def reserve(cmd: Reserve, ctx: Context) -> Reserved:
        if not in_stock(cmd.sku, cmd.qty):
            raise Failure("OutOfStock", f"{cmd.sku} is out of stock", retryable=False)
        return Reserved(hold_id=await hold(cmd.sku, cmd.qty, key=ctx.idempotency_key))

    async with ParticipantWorker(inventory, transport=transport, idempotency=store):
        ...

The contract: a handler either applies its effect and returns a result, or
raises and applies nothing. The worker turns the result into ``TaskCompleted``
and any exception into ``TaskFailed``, records the reply by the command's
idempotency key so a retry or a duplicate gets the same answer without a second
effect, and acks a command only once its reply was published.
"""

from contracts._public import show_as_public
from participants._encrypted import EndToEndKeys
from participants._errors import Failure, ServiceDefinitionError
from participants._replies import ALREADY_COMPENSATED, INVALID_COMMAND
from participants._serve import serve_participants
from participants._service import CommandHandler, Context, Registration, Service
from participants._worker import ParticipantWorker

__all__ = [
    "ALREADY_COMPENSATED",
    "INVALID_COMMAND",
    "CommandHandler",
    "Context",
    "EndToEndKeys",
    "Failure",
    "ParticipantWorker",
    "Registration",
    "Service",
    "ServiceDefinitionError",
    "serve_participants",
]

show_as_public(__name__, globals(), __all__)
