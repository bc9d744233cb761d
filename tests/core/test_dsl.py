"""The saga DSL: every validation error, frozen definitions, Mermaid export, Retry.delay."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta

import msgspec
import pytest

from coordinator import Saga, SagaDefinitionError, SagaError, to_mermaid
from coordinator.core import Retry, StepDef


class Order(msgspec.Struct, frozen=True):
    id: str
    total: int = 0


class Cmd(msgspec.Struct):
    order_id: str


class Reply(msgspec.Struct):
    value: str


def send(o: Order) -> Cmd:
    return Cmd(order_id=o.id)


def undo(o: Order) -> Cmd:
    return Cmd(order_id=o.id)


def builder(**kwargs: object) -> Saga[Order]:
    return Saga("order", data=Order, **kwargs)  # type: ignore[arg-type]


def expect_definition_error(match: str) -> pytest.RaisesExc[SagaDefinitionError]:
    return pytest.raises(SagaDefinitionError, match=match)


# -- the error type ------------------------------------------------------------------------


def test_definition_error_is_a_value_error_and_a_saga_error() -> None:
    s = builder()
    with pytest.raises(ValueError, match="at least one step") as info:
        s.define()
    assert isinstance(info.value, SagaDefinitionError)
    assert isinstance(info.value, SagaError)


# -- the builder's own arguments -----------------------------------------------------------


def test_invalid_saga_name() -> None:
    with expect_definition_error(r"saga name 'bad name': use letters, digits"):
        Saga("bad name", data=Order)


def test_saga_version_must_be_positive() -> None:
    with expect_definition_error(r"saga 'order': version must be >= 1, got 0"):
        Saga("order", data=Order, version=0)


# -- define() ------------------------------------------------------------------------------


def test_empty_define() -> None:
    s = builder()
    with expect_definition_error(r"saga 'order': define\(\) needs at least one step"):
        s.define()


def test_duplicate_step_names_at_top_level() -> None:
    s = builder()
    with expect_definition_error(r"step 'a': the name is used twice; step names must be unique"):
        s.define(
            s.step("a", service="svc", send=send, undo=undo),
            s.step("a", service="svc", send=send, undo=undo),
        )


def test_duplicate_step_names_inside_a_parallel_group() -> None:
    s = builder()
    with expect_definition_error(r"step 'b': the name is used twice"):
        s.define(
            s.parallel(
                "group",
                s.step("b", service="svc", send=send, undo=undo),
                s.step("b", service="svc", send=send, undo=undo),
            )
        )


def test_duplicate_between_a_branch_and_a_top_level_step() -> None:
    s = builder()
    with expect_definition_error(r"step 'b': the name is used twice"):
        s.define(
            s.step("b", service="svc", send=send, undo=undo),
            s.parallel("group", s.step("b", service="svc", send=send, undo=undo)),
        )


def test_parallel_group_name_clashes_with_a_step() -> None:
    s = builder()
    with expect_definition_error(r"step 'x': the name is used twice"):
        s.define(
            s.step("x", service="svc", send=send, undo=undo),
            s.parallel("x", s.step("y", service="svc", send=send, undo=undo)),
        )


def test_duplicate_between_a_wait_and_a_step() -> None:
    s = builder()
    with expect_definition_error(r"step 'approval': the name is used twice"):
        s.define(
            s.step("approval", service="svc", send=send, undo=undo),
            s.wait_for("approval"),
        )


def test_wait_named_explicitly_clashes_with_a_step() -> None:
    s = builder()
    with expect_definition_error(r"step 'a': the name is used twice"):
        s.define(
            s.step("a", service="svc", send=send, undo=undo),
            s.wait_for("approval", name="a"),
        )


@pytest.mark.parametrize("name", ["", "has space", "colon:inside", "-leading-dash", "é"])
def test_invalid_step_names(name: str) -> None:
    s = builder()
    with expect_definition_error(
        rf"saga 'order', step {re.escape(repr(name))}: use letters, digits, '_', '.' and '-' only"
    ):
        s.define(s.step(name, service="svc", send=send, undo=undo))


def test_invalid_wait_name() -> None:
    s = builder()
    with expect_definition_error(r"step 'bad signal': use letters, digits"):
        s.define(
            s.step("a", service="svc", send=send, undo=undo),
            s.wait_for("bad signal"),
        )


def test_invalid_parallel_group_name() -> None:
    s = builder()
    with expect_definition_error(r"step 'my group': use letters, digits"):
        s.define(s.parallel("my group", s.step("a", service="svc", send=send, undo=undo)))


def test_valid_names_with_dots_dashes_and_underscores() -> None:
    s = builder()
    definition = s.define(s.step("_a.b-c9", service="svc.v2-x_y", send=send, undo=undo))
    assert "_a.b-c9" in definition.steps


@pytest.mark.parametrize("service", ["", "pay ments", "a/b", "x:y"])
def test_invalid_service_name(service: str) -> None:
    s = builder()
    with expect_definition_error(
        rf"step 'a': service {re.escape(repr(service))} is not a valid name"
    ):
        s.define(s.step("a", service=service, send=send, undo=undo))


def test_step_without_undo_and_no_pivot() -> None:
    s = builder()
    with expect_definition_error(
        r"step 'a': has no compensation \(undo=\) but comes before the pivot; "
        r"give it an undo=, or mark the point of no return with pivot=True"
    ):
        s.define(s.step("a", service="svc", send=send))


def test_step_without_undo_before_an_explicit_pivot() -> None:
    s = builder()
    with expect_definition_error(r"step 'b': has no compensation \(undo=\) but comes before"):
        s.define(
            s.step("a", service="svc", send=send, undo=undo),
            s.step("b", service="svc", send=send),
            s.step("p", service="svc", send=send, pivot=True),
        )


def test_branch_without_undo_before_the_pivot() -> None:
    s = builder()
    with expect_definition_error(r"step 'b2': has no compensation"):
        s.define(
            s.parallel(
                "g",
                s.step("b1", service="svc", send=send, undo=undo),
                s.step("b2", service="svc", send=send),
            ),
            s.step("p", service="svc", send=send, pivot=True),
        )


def test_compensatable_step_after_the_pivot() -> None:
    s = builder()
    with expect_definition_error(
        r"step 'late': has an undo= but comes after the pivot 'p', where the saga can only go "
        r"forward"
    ):
        s.define(
            s.step("a", service="svc", send=send, undo=undo),
            s.step("p", service="svc", send=send, pivot=True),
            s.step("late", service="svc", send=send, undo=undo),
        )


def test_compensatable_branch_after_the_pivot() -> None:
    s = builder()
    with expect_definition_error(r"step 'b': has an undo= but comes after the pivot 'p'"):
        s.define(
            s.step("p", service="svc", send=send, pivot=True),
            s.parallel(
                "g",
                s.step("a", service="svc", send=send),
                s.step("b", service="svc", send=send, undo=undo),
            ),
        )


def test_two_pivots() -> None:
    s = builder()
    with expect_definition_error(r"step 'p2': a saga has one pivot and 'p1' is already it"):
        s.define(
            s.step("p1", service="svc", send=send, pivot=True),
            s.step("p2", service="svc", send=send, pivot=True),
        )


def test_pivot_with_an_undo() -> None:
    s = builder()
    with expect_definition_error(
        r"step 'p': a pivot is the point of no return and has no undo=; "
        r"drop pivot=True or the undo"
    ):
        s.define(s.step("p", service="svc", send=send, undo=undo, pivot=True))


def test_pivot_inside_a_parallel_group() -> None:
    s = builder()
    with expect_definition_error(r"step 'p': a pivot cannot be a branch of parallel group 'g'"):
        s.define(
            s.parallel(
                "g",
                s.step("a", service="svc", send=send, undo=undo),
                s.step("p", service="svc", send=send, pivot=True),
            )
        )


def test_step_timeout_longer_than_the_deadline() -> None:
    s = builder(deadline=timedelta(minutes=1))
    with expect_definition_error(
        r"step 'a': timeout 0:02:00 is longer than the saga deadline 0:01:00; "
        r"shorten the timeout or lengthen the deadline"
    ):
        s.define(s.step("a", service="svc", send=send, undo=undo, timeout=timedelta(minutes=2)))


def test_branch_timeout_longer_than_the_deadline() -> None:
    s = builder(deadline=timedelta(seconds=30))
    with expect_definition_error(r"step 'b': timeout 0:01:00 is longer than the saga deadline"):
        s.define(
            s.parallel(
                "g",
                s.step("a", service="svc", send=send, undo=undo),
                s.step("b", service="svc", send=send, undo=undo, timeout=timedelta(minutes=1)),
            )
        )


def test_wait_timeout_longer_than_the_deadline() -> None:
    s = builder(deadline=timedelta(hours=1))
    with expect_definition_error(
        r"step 'approval': timeout 1 day, 0:00:00 is longer than the saga deadline 1:00:00"
    ):
        s.define(
            s.step("a", service="svc", send=send, undo=undo),
            s.wait_for("approval", timeout=timedelta(days=1)),
        )


def test_timeout_equal_to_the_deadline_is_allowed() -> None:
    s = builder(deadline=timedelta(minutes=1))
    definition = s.define(
        s.step("a", service="svc", send=send, undo=undo, timeout=timedelta(minutes=1))
    )
    assert definition.deadline == timedelta(minutes=1)


@pytest.mark.parametrize("timeout", [timedelta(0), timedelta(seconds=-1)])
def test_non_positive_step_timeout(timeout: timedelta) -> None:
    s = builder()
    with expect_definition_error(r"saga 'order', step 'a': timeout must be > 0"):
        s.define(s.step("a", service="svc", send=send, undo=undo, timeout=timeout))


def test_non_positive_wait_timeout() -> None:
    s = builder()
    with expect_definition_error(r"step 'approval': timeout must be > 0"):
        s.define(
            s.step("a", service="svc", send=send, undo=undo),
            s.wait_for("approval", timeout=timedelta(0)),
        )


def test_empty_parallel_group() -> None:
    s = builder()
    with expect_definition_error(r"step 'g': a parallel group needs at least one step"):
        s.define(s.step("a", service="svc", send=send, undo=undo), s.parallel("g"))


def test_merge_without_result() -> None:
    s = builder()
    with expect_definition_error(
        r"step 'a': merge= needs result= \(the type the reply is decoded into\)"
    ):
        s.step("a", service="svc", send=send, undo=undo, merge=lambda o, r: o)


def test_invalid_on_unavailable() -> None:
    s = builder()
    with expect_definition_error(
        r"step 'a': on_unavailable must be 'wait' or 'compensate', not 'explode'"
    ):
        s.step("a", service="svc", send=send, undo=undo, on_unavailable="explode")  # type: ignore[arg-type]


def test_invalid_on_timeout() -> None:
    s = builder()
    with expect_definition_error(
        r"wait 'approval': on_timeout must be 'compensate' or 'continue', not 'ignore'"
    ):
        s.wait_for("approval", on_timeout="ignore")  # type: ignore[call-overload]


def test_invalid_on_timeout_names_the_explicit_wait_name() -> None:
    s = builder()
    with expect_definition_error(r"wait 'boss': on_timeout must be"):
        s.wait_for("approval", name="boss", on_timeout="later")  # type: ignore[call-overload]


def test_node_from_another_builder() -> None:
    s = builder()
    other = Saga("other", data=Order)
    with expect_definition_error(
        r"saga 'order': .* was not made by this saga's builder; "
        r"build it with order.step\(...\), .parallel\(...\) or .wait_for\(...\)"
    ):
        s.define(
            s.step("a", service="svc", send=send, undo=undo),
            other.step("b", service="svc", send=send, undo=undo),
        )


def test_branch_from_another_builder_inside_a_group() -> None:
    s = builder()
    other = Saga("other", data=Order)
    with expect_definition_error(r"was not made by this saga's builder"):
        s.define(s.parallel("g", other.step("b", service="svc", send=send, undo=undo)))


def test_wait_from_another_builder() -> None:
    s = builder()
    other = Saga("other", data=Order)
    with expect_definition_error(r"was not made by this saga's builder"):
        s.define(s.step("a", service="svc", send=send, undo=undo), other.wait_for("approval"))


def test_step_def_built_by_hand() -> None:
    s = builder()
    with expect_definition_error(r"was not made by this saga's builder"):
        s.define(StepDef(name="a", service="svc", send=send, undo=undo))


def test_something_that_is_not_a_node_at_all() -> None:
    # The validator checks isinstance(node, StepDef | WaitDef | ParallelDef) precisely to
    # reject such values with a helpful message; it must not crash with AttributeError first.
    s = builder()
    with expect_definition_error(r"was not made by this saga's builder"):
        s.define("reserve")  # type: ignore[arg-type]


# -- Retry validation ----------------------------------------------------------------------


@pytest.mark.parametrize("attempts", [0, -3])
def test_retry_attempts_below_one(attempts: int) -> None:
    with pytest.raises(ValueError, match=rf"Retry\(attempts={attempts}\): attempts counts"):
        Retry(attempts=attempts)


@pytest.mark.parametrize("jitter", [-0.01, 1.5])
def test_retry_jitter_out_of_range(jitter: float) -> None:
    with pytest.raises(ValueError, match=rf"Retry\(jitter={jitter}\): must be between 0 and 1"):
        Retry(jitter=jitter)


def test_retry_backoff_above_max_backoff() -> None:
    with pytest.raises(ValueError, match=r"need 0 <= backoff <= max_backoff"):
        Retry(backoff=timedelta(minutes=2), max_backoff=timedelta(minutes=1))


def test_retry_negative_backoff() -> None:
    with pytest.raises(ValueError, match=r"need 0 <= backoff <= max_backoff"):
        Retry(backoff=timedelta(seconds=-1))


def test_retry_multiplier_below_one() -> None:
    with pytest.raises(ValueError, match=r"Retry\(multiplier=0.5\): must be >= 1"):
        Retry(multiplier=0.5)


def test_retry_give_up_on_takes_names_and_exception_classes() -> None:
    retry = Retry(attempts=3, give_up_on=["OutOfStock", KeyError])
    assert retry.give_up_on == frozenset({"OutOfStock", "KeyError"})
    assert not retry.allows(1, error_type="KeyError", retryable=True)
    assert not retry.allows(1, error_type="Other", retryable=False)
    assert retry.allows(2, error_type="Other", retryable=True)
    assert not retry.allows(3, error_type="Other", retryable=True)


# -- a valid definition --------------------------------------------------------------------


def full_definition() -> tuple[Saga[Order], object]:
    s = builder(deadline=timedelta(minutes=10))
    definition = s.define(
        s.step(
            "reserve",
            service="inventory",
            send=send,
            undo=undo,
            result=Reply,
            merge=lambda o, r: o,
            timeout=timedelta(seconds=10),
        ),
        s.parallel(
            "pay",
            s.step("charge", service="payments", send=send, undo=undo, retry=Retry(attempts=3)),
            s.step("points", service="loyalty", send=send, undo=undo, when=lambda o: o.total > 5),
        ),
        s.wait_for("approval", timeout=timedelta(minutes=1)),
        s.step("ship", service="shipping", send=send, pivot=True),
        s.step("notify", service="mail", send=send),
    )
    return s, definition


def test_valid_definition_shape() -> None:
    s, definition = full_definition()
    assert s.definition is definition
    d = s.definition
    assert d is not None
    assert d.key == "order@1"
    assert list(d.steps) == ["reserve", "charge", "points", "ship", "notify"]
    assert list(d.waits) == ["approval"]
    assert [n.name for n in d.nodes] == ["reserve", "pay", "approval", "ship", "notify"]
    assert d.steps["reserve"].apply_result is not None
    assert d.steps["charge"].retry.attempts == 3
    assert d.steps["notify"].retry.attempts == 1


def test_valid_definition_is_frozen() -> None:
    s, _ = full_definition()
    d = s.definition
    assert d is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.nodes = ()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.steps["reserve"].timeout = None  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.waits["approval"].signal = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.steps["charge"].retry.attempts = 9  # type: ignore[misc]
    assert isinstance(d.nodes, tuple)


def test_merge_decodes_the_reply_into_the_result_type() -> None:
    s = builder()
    definition = s.define(
        s.step(
            "a",
            service="svc",
            send=send,
            undo=undo,
            result=Reply,
            merge=lambda o, r: msgspec.structs.replace(o, id=r.value),
        )
    )
    apply = definition.steps["a"].apply_result
    assert apply is not None
    assert apply(Order(id="1"), {"value": "2"}) == Order(id="2")
    with pytest.raises(msgspec.ValidationError):
        apply(Order(id="1"), {"value": 3})


# -- Mermaid -------------------------------------------------------------------------------


def test_mermaid_has_every_step_a_subgraph_dashed_undo_and_the_wait() -> None:
    s, _ = full_definition()
    d = s.definition
    assert d is not None
    text = to_mermaid(d)
    assert text.startswith("flowchart TD\n")
    for name in ("reserve", "charge", "points", "ship", "notify"):
        assert re.search(rf"^\s+{name}[\[{{]", text, re.MULTILINE), name
    assert "subgraph pay[pay: parallel]" in text
    # The branches are inside the subgraph.
    body = text.split("subgraph pay", 1)[1].split("\n    end\n", 1)[0]
    assert "charge[" in body
    assert "points[" in body
    # Undo edges are dashed, one per compensatable step, none for the pivot or after it.
    for name in ("reserve", "charge", "points"):
        assert f"{name} -.->|undo| {name}_undo[/undo {name}/]" in text
    assert "ship -.->" not in text
    assert "notify -.->" not in text
    assert 'approval(["wait for approval<br/><i>timeout 0:01:00</i>"])' in text
    # Fan-out and fan-in around the parallel group; forward edges are solid.
    assert "reserve --> charge" in text
    assert "reserve --> points" in text
    assert "charge --> approval" in text
    assert "points --> approval" in text
    assert "approval --> ship" in text
    assert "notify --> done" in text
    # The pivot is drawn differently (a hexagon).
    assert "ship{{" in text


def test_mermaid_ids_are_sanitised() -> None:
    s = builder()
    d = s.define(s.step("a.b-c", service="svc", send=send, undo=undo))
    text = to_mermaid(d)
    assert "a_b_c[" in text
    assert "a_b_c -.->|undo|" in text


# -- Retry.delay ---------------------------------------------------------------------------


def test_delay_is_deterministic_for_the_same_seed() -> None:
    retry = Retry(attempts=5, backoff=timedelta(seconds=2), jitter=0.5)
    for attempt in range(1, 5):
        assert retry.delay(attempt, seed="saga-1:step") == retry.delay(attempt, seed="saga-1:step")
        assert Retry(attempts=5, backoff=timedelta(seconds=2), jitter=0.5).delay(
            attempt, seed="saga-1:step"
        ) == retry.delay(attempt, seed="saga-1:step")


def test_delay_differs_across_seeds() -> None:
    retry = Retry(attempts=5, backoff=timedelta(seconds=2), jitter=0.5)
    delays = {retry.delay(1, seed=f"saga-{i}:step") for i in range(20)}
    assert len(delays) == 20


@pytest.mark.parametrize("jitter", [0.0, 0.1, 0.5, 1.0])
def test_delay_stays_within_the_jitter_band(jitter: float) -> None:
    retry = Retry(
        attempts=10,
        backoff=timedelta(seconds=1),
        multiplier=2.0,
        max_backoff=timedelta(seconds=20),
        jitter=jitter,
    )
    cap = 20.0
    for seed in range(50):
        for attempt in range(1, 10):
            base = min(1.0 * 2.0 ** (attempt - 1), cap)
            seconds = retry.delay(attempt, seed=f"s{seed}").total_seconds()
            assert base * (1 - jitter) - 1e-6 <= seconds <= min(cap, base * (1 + jitter)) + 1e-6


def test_delay_grows_exponentially_until_the_cap() -> None:
    retry = Retry(
        attempts=10,
        backoff=timedelta(seconds=1),
        multiplier=3.0,
        max_backoff=timedelta(seconds=30),
        jitter=0.0,
    )
    delays = [retry.delay(a, seed="x").total_seconds() for a in range(1, 7)]
    assert delays == [1.0, 3.0, 9.0, 27.0, 30.0, 30.0]


def test_delay_with_jitter_grows_on_average() -> None:
    retry = Retry(attempts=10, backoff=timedelta(seconds=1), jitter=0.2)
    for seed in range(20):
        a1, a2, a3 = (retry.delay(a, seed=f"s{seed}").total_seconds() for a in (1, 2, 3))
        # Bands [0.8, 1.2], [1.6, 2.4], [3.2, 4.8] do not overlap.
        assert a1 < a2 < a3
