"""The order saga unit-tested through the pure Scenario helper, as a saga author would."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from coordinator.examples.orders import Order, saga
from coordinator.examples.orders.messages import Approval, Booked, Charged, Line, Reserved
from coordinator.testing import Scenario


def make(**changes: object) -> Scenario[Order]:
    fields: dict[str, object] = {
        "order_id": "o1",
        "lines": [Line(sku="a", quantity=2)],
        "total_cents": 1_000,
        "member_id": "m1",
    }
    fields.update(changes)
    return Scenario(saga, Order(**fields))  # type: ignore[arg-type]


def test_happy_path_builds_the_commands_from_the_data() -> None:
    s = make()
    reserve = s.expect_sent("reserve")
    assert reserve.payload == {"order_id": "o1", "lines": [{"sku": "a", "quantity": 2}]}
    assert reserve.dispatch.idempotency_key == "saga-1:reserve:action"
    reserve.reply(Reserved(hold_id="h1"))
    s.expect_sent("charge").reply(Charged(charge_id="c1"))
    s.expect_sent("points").reply()
    s.expect_sent("ship").reply(Booked(tracking_number="t1"))
    s.expect_status("completed")
    assert (s.data.hold_id, s.data.charge_id, s.data.tracking_number) == ("h1", "c1", "t1")


def test_declined_card_then_compensation_in_reverse() -> None:
    s = make()
    s.expect_sent("reserve").reply(Reserved(hold_id="h1"))
    s.expect_sent("points").reply()
    s.expect_sent("charge").fail("CardDeclined", retryable=False)
    s.expect_compensation("points").reply()
    s.expect_compensation("reserve").reply()
    s.expect_status("compensated")
    assert [d.step for d in s.sent if d.kind == "compensation"] == ["points", "reserve"]


def test_timeout_of_ship_is_retried_then_compensated() -> None:
    s = make(member_id=None)
    s.expect_sent("reserve").reply(Reserved(hold_id="h1"))
    s.expect_sent("charge").reply(Charged(charge_id="c1"))
    s.expect_sent("ship").lose()
    s.advance(timedelta(seconds=12))
    retry = s.expect_sent("ship")
    assert retry.dispatch.attempt == 2
    retry.lose()
    s.advance(timedelta(seconds=12))
    s.expect_compensation("ship").reply()
    s.expect_compensation("charge").reply()
    s.expect_compensation("reserve").reply()
    s.expect_status("compensated")


def test_approval_needed_above_threshold() -> None:
    s = make(total_cents=500_000)
    s.expect_sent("reserve").reply(Reserved(hold_id="h1"))
    s.expect_sent("charge").reply(Charged(charge_id="c1"))
    s.expect_sent("points").reply()
    s.expect_step("approval", "waiting")
    s.expect_nothing_sent()
    s.advance(timedelta(hours=1))
    s.signal("approval", Approval(approved=True, by="kim"))
    s.expect_sent("ship").reply(Booked(tracking_number="t"))
    s.expect_status("completed")
    assert s.data.approved_by == "kim"


def test_the_expectations_hold_under_python_o() -> None:
    """Users' saga tests may run with ``python -O``, which strips ``assert``."""
    script = """
from tests.examples.test_order_scenarios import make
s = make()
for check in (
    lambda: s.expect_status("completed"),
    lambda: s.expect_step("reserve", "succeeded"),
    lambda: s.expect_nothing_sent(),
    lambda: s.expect_sent("ship"),
):
    try:
        check()
    except AssertionError:
        continue
    raise SystemExit("an expectation passed that should not have")
"""
    root = Path(__file__).parents[2]
    done = subprocess.run(
        [sys.executable, "-O", "-c", script], cwd=root, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
