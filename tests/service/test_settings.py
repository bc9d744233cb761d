"""Settings read from the environment: the forms an operator writes."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from pydantic import ValidationError

from contracts import LIFECYCLE_EVENTS
from coordinator import Settings
from coordinator.service._serve import senders_of


@pytest.fixture(autouse=True)
def _no_saga_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests say which settings they set: none leaks in from the caller's shell."""
    for name in list(os.environ):
        if name.upper().startswith("SAGA_"):
            monkeypatch.delenv(name)


def test_every_lifecycle_event_is_announced_by_default() -> None:
    assert (
        Settings().announce
        == LIFECYCLE_EVENTS
        == {
            "started",
            "completed",
            "compensated",
            "failed",
            "cancelled",
        }
    )


@pytest.mark.parametrize(
    ("value", "announced"),
    [
        ("completed,compensated", {"completed", "compensated"}),
        (" failed , cancelled ,", {"failed", "cancelled"}),
        ("", set()),
    ],
)
def test_announce_is_a_comma_separated_list(
    monkeypatch: pytest.MonkeyPatch, value: str, announced: set[str]
) -> None:
    monkeypatch.setenv("SAGA_ANNOUNCE", value)
    assert Settings().announce == announced


def test_an_unknown_event_is_refused_with_the_known_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGA_ANNOUNCE", "completed,begun")
    with pytest.raises(ValidationError, match="'started', 'completed'"):
        Settings()


def test_the_timer_interval_is_a_duration(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().timer_interval == timedelta(seconds=0.2)
    monkeypatch.setenv("SAGA_TIMER_INTERVAL", "0.1")
    assert Settings().timer_interval == timedelta(seconds=0.1), "plain seconds, as before"
    monkeypatch.setenv("SAGA_TIMER_INTERVAL", "PT2S")
    assert Settings().timer_interval == timedelta(seconds=2)


@pytest.mark.parametrize(
    ("check", "url", "on"),
    [
        ("auto", "amqp://guest:guest@127.0.0.1:5672/", False),
        ("auto", "amqp://127.0.0.1:5672/", False),  # aio-pika logs in as guest
        ("auto", "amqp://shop.coordinator:s3cret@rabbit:5672/", True),
        ("auto", "amqps://rabbit:5671/?auth=external", True),  # the certificate names it
        ("off", "amqp://shop.coordinator:s3cret@rabbit:5672/", False),
        ("on", "amqp://guest:guest@127.0.0.1:5672/", True),
    ],
)
def test_the_sender_check_is_on_once_users_are_configured(
    monkeypatch: pytest.MonkeyPatch, check: str, url: str, on: bool
) -> None:
    monkeypatch.setenv("SAGA_SENDER_CHECK", check)
    monkeypatch.setenv("SAGA_AMQP_URL", url)
    assert Settings().checks_senders is on


def test_the_senders_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGA_SENDER_CHECK", "on")
    monkeypatch.setenv("SAGA_NAMESPACE", "shop")
    monkeypatch.setenv("SAGA_SERVICE_USERS", '{"payments": "pay-svc"}')
    senders = senders_of(Settings())
    assert senders is not None
    assert senders.controllers == {"shop.coordinator", "shop.operator"}
    assert (senders.service_user("payments"), senders.service_user("loyalty")) == (
        "pay-svc",
        "shop.loyalty",
    )
    monkeypatch.setenv("SAGA_CONTROL_USERS", " ops-1 , shop.coordinator,")
    senders = senders_of(Settings())
    assert senders is not None and senders.controllers == {"ops-1", "shop.coordinator"}
    monkeypatch.setenv("SAGA_SENDER_CHECK", "off")
    assert senders_of(Settings()) is None
