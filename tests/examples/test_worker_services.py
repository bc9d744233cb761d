"""``ORDERS_SERVICES``: the example worker runs only the services it names (one a container)."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator import SettingsError
from coordinator.examples.orders.worker import services


@pytest.fixture(autouse=True)
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERS_LEDGER", str(tmp_path / "ledger.sqlite3"))


def test_all_four_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORDERS_SERVICES", raising=False)
    assert [s.name for s in services()] == ["inventory", "payments", "loyalty", "shipping"]


def test_only_those_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERS_SERVICES", " shipping, payments")
    assert [s.name for s in services()] == ["payments", "shipping"]


def test_an_unknown_name_is_an_error_that_lists_the_known(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERS_SERVICES", "payment")
    with pytest.raises(SettingsError, match=r"no service payment; choose from inventory, payments"):
        services()
