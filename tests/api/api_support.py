"""The API tests run a coordinator in this process (``serve_coordinator`` with the
API's extras, as ``saga run --http`` does) on the real RabbitMQ and Redis.

The saga with steps and its participants are the dashboard tests' (``desk``), and
the metrics are read with the metrics tests' ``readings``: one deployment to reason
about for both faces of the operator functions."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import msgspec

sys.path.insert(0, str(Path(__file__).parents[1] / "e2e"))
sys.path.insert(0, str(Path(__file__).parents[1] / "dashboard"))
sys.path.insert(0, str(Path(__file__).parents[1] / "metrics"))


from coordinator import Saga
from coordinator.core import SagaDefinition
from coordinator.service import Settings, new_token

NAME = "api.approval"


class Request(msgspec.Struct):
    amount: int


def approval() -> SagaDefinition[Request]:
    """Waits for ``approve``: it stays running until signalled, with no participant."""
    saga = Saga(NAME, data=Request)
    return saga.define(saga.wait_for("approve", name="approval"))


TOKENS = {role: new_token(f"{role}-1", role) for role in ("viewer", "operator", "admin")}  # type: ignore[arg-type]


def auth(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role][0]}"}


class Api:
    def __init__(self, base: str, settings: Settings) -> None:
        self.base = base
        self.settings = settings
        self.http = httpx.AsyncClient(base_url=base, timeout=30)
