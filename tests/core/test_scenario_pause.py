"""Scenario's pause and resume helpers, as a saga author would test an operator's pause."""

from __future__ import annotations

from coordinator.core import Dispatch
from coordinator.examples.orders import Order, saga
from coordinator.examples.orders.messages import Line, Reserved
from coordinator.testing import Scenario


def test_a_paused_order_holds_the_reply_and_charges_only_after_resume() -> None:
    s = Scenario(saga, Order(order_id="o1", lines=[Line(sku="a", quantity=1)], total_cents=100))
    reserve = s.expect_sent("reserve")
    s.pause("alice")
    s.expect_paused()
    d = reserve.reply(Reserved(hold_id="h1"))
    assert d.changed and not any(isinstance(e, Dispatch) for e in d.effects)
    s.expect_step("reserve", "dispatched")
    s.expect_nothing_sent()
    assert not s.pause("bob").changed  # pausing twice is refused
    s.resume("bob")
    s.expect_paused(False)
    s.expect_step("reserve", "succeeded")
    s.expect_sent("charge")
