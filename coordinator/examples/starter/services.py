"""The participant services. Run them with ``saga participant starter.services:build_services``.

Each handler either applies its effect and returns its reply, or raises and
applies nothing. Their state is a dict here; a real service keeps it in its
own database, with the command's idempotency key beside the effect.
"""

from __future__ import annotations

from participants import Context, Failure, Service

from .messages import Charge, Charged, HoldSeat, Refund, ReleaseSeat, SeatHeld


class CardDeclined(Failure):
    retryable = False  # trying again cannot help: the saga compensates


def build_services(held: dict[str, str] | None = None) -> list[Service]:
    """The seats and payments services; ``held`` is the seats' store (seat by booking)."""
    seats, payments = Service("seats"), Service("payments")
    held = {} if held is None else held

    @seats.handles(HoldSeat)
    async def hold(cmd: HoldSeat, ctx: Context) -> SeatHeld:
        held[cmd.booking_id] = cmd.seat
        return SeatHeld(hold_id=f"hold-{cmd.booking_id}")

    @seats.handles(ReleaseSeat)
    async def release(cmd: ReleaseSeat, ctx: Context) -> None:
        held.pop(cmd.booking_id, None)

    @payments.handles(Charge)
    async def charge(cmd: Charge, ctx: Context) -> Charged:
        if cmd.card == "declined":
            raise CardDeclined(f"the card for {cmd.booking_id} was declined")
        return Charged(charge_id=f"ch-{cmd.booking_id}")

    @payments.handles(Refund)
    async def refund(cmd: Refund, ctx: Context) -> None:
        pass

    return [seats, payments]
