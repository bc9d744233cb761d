"""``saga start``, ``signal`` and ``cancel`` report success only once a coordinator
took the input: checked here against a stub of the client's store reads."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from coordinator import RequestRefusedError
from coordinator.client._accept import answer_to, cancel_checked, signal_checked, start_checked
from coordinator.core import SagaState
from coordinator.examples.orders import Order
from coordinator.ports import HistoryEntry, Refusal

ORDER = {"order_id": "o1", "lines": [], "total_cents": 100}


def entry(input_id: str, refused: str = "", data: Any = None) -> HistoryEntry:
    body = {"type": "Start", "data": data} if data is not None else {"type": "Signal"}
    return HistoryEntry(
        at=datetime.now(UTC),
        revision=1,
        input=msgspec.Raw(msgspec.json.encode(body)),
        note="",
        effects=msgspec.Raw(b"[]"),
        input_id=input_id,
        refused=refused,
    )


class Stub:
    """The store as the coordinator would leave it, advanced by ``react`` on each poll."""

    namespace = "ns1"

    def __init__(self, react: Callable[[Stub], None] = lambda s: None) -> None:
        self.stored: dict[str, Any] | None = None
        self.entries: list[HistoryEntry] = []
        self.refused: Refusal | None = None
        self.react = react
        self.sent: list[tuple[str, ...]] = []
        self.sent_at: datetime | None = None
        self.polls = 0

    async def state(self, saga_id: str) -> SagaState[Any] | None:
        if self.stored is None:
            return None
        now = datetime.now(UTC)
        return SagaState(
            **self.stored,
            saga_id=saga_id,
            name="order.place",
            version=1,
            revision=1,
            cursor=0,
            steps={},
            started_at=now,
            updated_at=now,
        )

    async def history(self, saga_id: str) -> Sequence[HistoryEntry]:
        return list(self.entries)

    async def refusal(self, saga_id: str) -> Refusal | None:
        return self.refused

    async def start(
        self,
        name: str,
        data: dict[str, Any],
        saga_id: str | None = None,
        *,
        sent_at: datetime,
        by: str = "",
    ) -> str:
        self.sent.append(("start", name))
        self.sent_at = sent_at
        return saga_id or "generated"

    async def signal(self, saga_id: str, name: str, data: dict[str, Any], *, by: str = "") -> str:
        self.sent.append(("signal", name))
        return f"m{len(self.sent)}"

    async def cancel(self, saga_id: str, reason: str, *, by: str = "") -> str:
        self.sent.append(("cancel", reason))
        return f"m{len(self.sent)}"

    async def sleep(self, _seconds: float) -> None:
        self.polls += 1
        self.react(self)


def running(stub: Stub) -> Stub:
    stub.stored = {"status": "running", "data": ORDER}
    return stub


# -- start ---------------------------------------------------------------------------


async def test_start_returns_once_the_saga_exists() -> None:
    def create(s: Stub) -> None:
        if s.polls == 3:
            s.stored = {"status": "running", "data": ORDER}
            s.entries = [entry("start:o1", data=ORDER)]

    stub = Stub(create)
    sid = await start_checked(stub, "order.place", ORDER, "o1", accept_timeout=60, sleep=stub.sleep)
    assert sid == "o1"
    assert stub.sent == [("start", "order.place")]


async def test_start_refused_by_the_coordinator_says_why() -> None:
    def refuse(s: Stub) -> None:
        assert s.sent_at is not None
        s.refused = Refusal(
            reason="unknown_saga",
            detail="no saga definition named 'order.plac' (known: order.place)",
            sent_at=s.sent_at,
        )

    stub = Stub(refuse)
    with pytest.raises(RequestRefusedError, match=r"refused to start o1: .*known: order.place"):
        await start_checked(stub, "order.plac", ORDER, "o1", accept_timeout=60, sleep=stub.sleep)


async def test_start_that_does_not_fit_names_the_field() -> None:
    def refuse(s: Stub) -> None:
        assert s.sent_at is not None
        detail = "Expected `int`, got `str` - at `$.total_cents`"
        s.refused = Refusal(reason="schema_mismatch", detail=detail, sent_at=s.sent_at)

    stub = Stub(refuse)
    with pytest.raises(
        RequestRefusedError, match=r"does not fit saga 'order.place'.*\$\.total_cents"
    ):
        await start_checked(stub, "order.place", ORDER, "o1", accept_timeout=60, sleep=stub.sleep)


async def test_an_older_refusal_of_the_same_id_is_not_the_answer() -> None:
    old = Refusal(reason="unknown_saga", detail="old", sent_at=datetime(2020, 1, 1, tzinfo=UTC))

    def create(s: Stub) -> None:
        if s.polls == 2:
            s.stored = {"status": "running", "data": ORDER}

    stub = Stub(create)
    stub.refused = old
    assert (
        await start_checked(stub, "order.place", ORDER, "o1", accept_timeout=60, sleep=stub.sleep)
        == "o1"
    )


async def test_start_nobody_takes_says_no_coordinator_and_names_the_namespace() -> None:
    stub = Stub()
    with pytest.raises(
        RequestRefusedError, match=r"no coordinator took the start within 0 s .*'ns1'"
    ):
        await start_checked(stub, "order.place", ORDER, "o1", accept_timeout=0, sleep=stub.sleep)


async def test_input_checked_locally_is_never_sent() -> None:
    stub = Stub()
    bad = {**ORDER, "total_cents": "lots"}
    with pytest.raises(RequestRefusedError, match=r"\$\.total_cents"):
        await start_checked(
            stub, "order.place", bad, "o1", accept_timeout=60, data_type=Order, sleep=stub.sleep
        )
    assert stub.sent == []


@pytest.mark.parametrize("data_type", [None, Order])
async def test_an_existing_saga_with_other_input_says_the_input_was_ignored(
    data_type: type | None,
) -> None:
    stub = running(Stub())
    stub.entries = [entry("start:o1", data={**ORDER, "card": "visa"})]
    other = {**ORDER, "total_cents": 999}
    with pytest.raises(RequestRefusedError, match="already exists; this input was ignored"):
        await start_checked(
            stub, "order.place", other, "o1", accept_timeout=60, data_type=data_type
        )
    assert stub.sent == [], "nothing is sent for a saga that exists"
    same = await start_checked(
        stub, "order.place", ORDER, "o1", accept_timeout=60, data_type=data_type
    )
    assert same == "o1"


# -- signal and cancel ----------------------------------------------------------------


async def test_signal_applied_returns() -> None:
    stub = running(Stub(lambda s: s.entries.append(entry("m1")) if s.polls == 2 else None))
    await signal_checked(stub, "o1", "approval", {}, accept_timeout=60, sleep=stub.sleep)
    assert stub.sent == [("signal", "approval")]


async def test_signal_refused_says_why() -> None:
    def refuse(s: Stub) -> None:
        s.entries = [entry("other"), entry("m1", refused="approval.approved: Expected `bool`")]

    stub = running(Stub(refuse))
    with pytest.raises(RequestRefusedError, match=r"o1 refused the signal: approval.approved"):
        await signal_checked(stub, "o1", "approval", {}, accept_timeout=60, sleep=stub.sleep)


async def test_cancel_refused_says_why_and_applied_returns() -> None:
    stub = running(Stub(lambda s: s.entries.append(entry("m1", refused="not while compensating"))))
    with pytest.raises(RequestRefusedError, match="refused the cancel: not while compensating"):
        await cancel_checked(stub, "o1", "r", accept_timeout=60, sleep=stub.sleep)
    stub = running(Stub(lambda s: s.entries.append(entry("m1"))))
    await cancel_checked(stub, "o1", "r", accept_timeout=60, sleep=stub.sleep)


async def test_an_entry_of_another_input_is_not_the_answer() -> None:
    stub = running(Stub(lambda s: s.entries.append(entry("someone-else"))))
    with pytest.raises(RequestRefusedError, match="no coordinator took the cancel within 0 s"):
        await cancel_checked(stub, "o1", "r", accept_timeout=0, sleep=stub.sleep)


async def test_unknown_and_terminal_sagas_are_refused_before_anything_is_sent() -> None:
    stub = Stub()
    with pytest.raises(RequestRefusedError, match="no saga with id o1 in namespace 'ns1'"):
        await signal_checked(stub, "o1", "approval", {}, accept_timeout=60)
    stub.stored = {"status": "compensated", "data": ORDER}
    with pytest.raises(RequestRefusedError, match="o1 is compensated: it takes no cancel any more"):
        await cancel_checked(stub, "o1", "r", accept_timeout=60)
    assert stub.sent == []


async def test_answer_to_finds_the_latest_entry_of_the_input() -> None:
    entries = [entry("a"), entry("b", refused="no")]

    async def history() -> Sequence[HistoryEntry]:
        return entries

    found = await answer_to(history, "b", timeout=0)
    assert found is not None and found.refused == "no"
    assert await answer_to(history, "c", timeout=0) is None
