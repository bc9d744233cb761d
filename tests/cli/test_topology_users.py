"""``saga topology --export --users``: which users, from which services, and the mistakes."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from coordinator.cli import app

runner = CliRunner()
ORDERS = "coordinator.examples.orders:saga"


def test_users_for_the_services_of_the_sagas_and_those_named() -> None:
    result = runner.invoke(
        app,
        ["topology", "--export", "--users", "--saga", ORDERS, "--service", "audit"],
        env={"SAGA_NAMESPACE": "shop"},
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert [user["name"] for user in document["users"]] == [
        "shop.coordinator",
        "shop.operator",
        "shop.audit",
        "shop.inventory",
        "shop.loyalty",
        "shop.payments",
        "shop.shipping",
    ]
    assert all(user["password_hash"] == "" for user in document["users"])
    assert {q["name"] for q in document["queues"]} >= {
        "shop.audit.commands",
        "shop.payments.commands",
    }
    [payments_events] = [
        t
        for t in document["topic_permissions"]
        if (t["user"], t["exchange"]) == ("shop.payments", "shop.events")
    ]
    assert payments_events["write"] == "^reply\\.payments\\."


def test_without_users_the_export_is_the_topology_alone() -> None:
    result = runner.invoke(app, ["topology", "--export", "--saga", ORDERS])
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)) == {"exchanges", "queues", "bindings"}


def test_the_mistakes_are_usage_errors() -> None:
    alone = runner.invoke(app, ["topology", "--users"])
    assert alone.exit_code == 2 and "--users adds to --export only" in alone.output
    role = runner.invoke(app, ["topology", "--export", "--users", "--service", "operator"])
    assert role.exit_code == 2 and "cannot be named operator" in role.output
