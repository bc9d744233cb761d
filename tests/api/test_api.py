"""The REST API against a coordinator on the real servers: each endpoint, each error,
the roles, pagination while sagas change, and the OpenAPI document."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from api_support import NAME, TOKENS, Api, auth
from openapi_spec_validator import validate

from coordinator.api import api_extras
from coordinator.service import ExposedWithoutTokensError, Settings, Tokens

pytestmark = pytest.mark.timeout(300)

ACTIONS = [
    ("POST", "/api/sagas", {"name": NAME, "data": {"amount": 1}}),
    ("POST", "/api/sagas/x/signal", {"name": "approve"}),
    ("POST", "/api/sagas/x/cancel", {}),
    ("POST", "/api/sagas/x/retry", None),
    ("POST", "/api/sagas/x/pause", {}),
    ("POST", "/api/sagas/x/resume", None),
    ("POST", "/api/dead-letters/redrive", {}),
    ("POST", "/api/dead-letters/purge", {}),
    ("POST", "/api/breakers/pay/open", {"reason": "test"}),
]


async def start(api: Api, saga_id: str, amount: int = 1) -> dict[str, Any]:
    answer = await api.http.post(
        "/api/sagas",
        json={"name": NAME, "data": {"amount": amount}, "saga_id": saga_id},
        headers=auth("operator"),
    )
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def test_actions_record_who_asked_and_answer_the_new_state(api: Api) -> None:
    saga = await start(api, "a-1")
    assert saga["status"] == "running" and saga["saga_id"] == "a-1"
    again = await start(api, "a-1")  # idempotent by id
    assert again["saga_id"] == "a-1"

    paused = await api.http.post("/api/sagas/a-1/pause", json={}, headers=auth("operator"))
    assert paused.status_code == 200, paused.text
    assert paused.json()["saga"].get("paused") is True
    twice = await api.http.post("/api/sagas/a-1/pause", json={}, headers=auth("operator"))
    assert twice.status_code == 409 and "pause" in twice.json()["detail"]
    resumed = await api.http.post("/api/sagas/a-1/resume", headers=auth("operator"))
    assert resumed.status_code == 200 and "paused" not in resumed.json()["saga"]

    signalled = await api.http.post(
        "/api/sagas/a-1/signal", json={"name": "approve", "data": {}}, headers=auth("operator")
    )
    assert signalled.status_code == 200, signalled.text
    assert signalled.json()["saga"]["status"] == "completed"
    ended = await api.http.post("/api/sagas/a-1/cancel", json={}, headers=auth("operator"))
    assert ended.status_code == 409 and "completed" in ended.json()["detail"]
    retry = await api.http.post("/api/sagas/a-1/retry", headers=auth("operator"))
    assert retry.status_code == 409, retry.text

    history = await api.http.get("/api/sagas/a-1/history", headers=auth("viewer"))
    assert history.status_code == 200
    inputs = [entry["input"] for entry in history.json()]
    by = {i["type"]: i.get("by") for i in inputs}
    assert by == {
        "Start": "operator-1",
        "PauseRequested": "operator-1",
        "ResumeRequested": "operator-1",
        "SignalReceived": "operator-1",
        "RetryRequested": "operator-1",  # refused, and recorded with who asked
    }

    await start(api, "a-2")
    cancelled = await api.http.post(
        "/api/sagas/a-2/cancel", json={"reason": "no longer wanted"}, headers=auth("admin")
    )
    assert cancelled.status_code == 200 and cancelled.json()["saga"]["status"] == "cancelled"

    shown = await api.http.get("/api/sagas/a-2", headers=auth("viewer"))
    assert shown.status_code == 200 and shown.json()["reason"] == "no longer wanted"
    graph = await api.http.get("/api/sagas/a-2/graph", headers=auth("viewer"))
    assert graph.status_code == 200 and graph.json()["mermaid"].startswith("flowchart TD")
    definitions = await api.http.get("/api/definitions", headers=auth("viewer"))
    assert [d["name"] for d in definitions.json()] == [NAME]


async def test_errors_name_what_is_wrong(api: Api) -> None:
    for path in ("/api/sagas/nope", "/api/sagas/nope/history", "/api/sagas/nope/graph"):
        answer = await api.http.get(path, headers=auth("viewer"))
        assert answer.status_code == 404, path
    for action in ("signal", "cancel", "pause", "resume", "retry"):
        body = {"name": "approve"} if action == "signal" else {}
        answer = await api.http.post(f"/api/sagas/nope/{action}", json=body, headers=auth("admin"))
        assert answer.status_code == 404, (action, answer.text)
    await start(api, "e-1")
    missing = await api.http.post("/api/sagas/e-1/signal", json={}, headers=auth("operator"))
    assert missing.status_code == 422 and "name" in missing.json()["detail"]
    unfit = await api.http.post(
        "/api/sagas", json={"name": NAME, "data": {"amount": "x"}}, headers=auth("operator")
    )
    assert unfit.status_code == 422 and "amount" in unfit.json()["detail"]
    cursor = await api.http.get("/api/sagas?cursor=zz", headers=auth("viewer"))
    assert cursor.status_code == 422
    breaker = await api.http.post(
        "/api/breakers/nothing/open", json={"reason": "x"}, headers=auth("admin")
    )
    assert breaker.status_code == 404


async def test_every_action_refuses_without_a_token_and_for_a_viewer(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "not-a-token-" + TOKENS["admin"][0]
    refused = await api.http.get("/api/sagas", headers={"Authorization": f"Bearer {wrong}"})
    assert refused.status_code == 401
    logged = [r.getMessage() for r in caplog.records if r.name == "coordinator.auth"]
    assert logged and all(wrong not in line and "not-a-token" not in line for line in logged)
    for method, path, body in ACTIONS:
        answer = await api.http.request(method, path, json=body)
        assert answer.status_code == 401, path
        bad = await api.http.request(method, path, json=body, headers={"Authorization": "Bearer x"})
        assert bad.status_code == 401, path
        viewer = await api.http.request(method, path, json=body, headers=auth("viewer"))
        assert viewer.status_code == 403, path
    for path in ("/api/dead-letters/purge", "/api/breakers/pay/open"):
        body = {"reason": "test"}
        operator = await api.http.post(path, json=body, headers=auth("operator"))
        assert operator.status_code == 403, path
    reading = await api.http.get("/api/sagas")
    assert reading.status_code == 401


async def test_pages_meet_every_saga_once_while_sagas_change(api: Api) -> None:
    ids = [f"p-{i:03}" for i in range(500)]
    for chunk in range(0, 500, 50):
        await asyncio.gather(*(start(api, sid) for sid in ids[chunk : chunk + 50]))
    seen: list[str] = []
    cursor: str | None = None
    changed = 0
    while True:
        params: dict[str, Any] = {"limit": 37, "id_prefix": "p-"}
        if cursor:
            params["cursor"] = cursor
        page = await api.http.get("/api/sagas", params=params, headers=auth("viewer"))
        assert page.status_code == 200, page.text
        body = page.json()
        seen += [s["saga_id"] for s in body["sagas"]]
        # Sagas not yet listed change (complete) and new ones start between pages.
        if changed < 480:
            await api.http.post(
                f"/api/sagas/{ids[changed]}/signal",
                json={"name": "approve"},
                headers=auth("operator"),
            )
            changed += 20
        await start(api, f"q-{len(seen)}")
        cursor = body["next"]
        if cursor is None:
            break
    assert sorted(seen) == ids and len(seen) == len(set(seen))
    running = await api.http.get(
        "/api/sagas",
        params={"status": "running", "id_prefix": "p-49", "limit": 500},
        headers=auth("viewer"),
    )
    assert {s["saga_id"] for s in running.json()["sagas"]} == {f"p-49{i}" for i in range(10)}
    waiting = await api.http.get(
        "/api/sagas",
        params={"signal": "approve", "id_prefix": "p-000", "limit": 5},
        headers=auth("viewer"),
    )
    assert waiting.json()["sagas"] == []  # p-000 was approved


async def test_openapi_document_validates_and_matches_the_routes(api: Api) -> None:
    answer = await api.http.get("/api/openapi.json")
    assert answer.status_code == 200
    document = answer.json()
    validate(document)
    routes = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post")
    }
    expected = (
        {("GET", "/api/sagas"), ("POST", "/api/sagas")}
        | {("GET", f"/api/sagas/{{saga_id}}{tail}") for tail in ("", "/history", "/graph")}
        | {
            ("POST", f"/api/sagas/{{saga_id}}/{a}")
            for a in ("signal", "cancel", "retry", "pause", "resume")
        }
        | {
            ("GET", "/api/breakers"),
            ("POST", "/api/breakers/{service}/{action}"),
            ("GET", "/api/dead-letters"),
            ("GET", "/api/dead-letters/{message_id}"),
            ("POST", "/api/dead-letters/redrive"),
            ("POST", "/api/dead-letters/purge"),
            ("GET", "/api/stuck"),
            ("GET", "/api/definitions"),
        }
    )
    assert routes == expected
    docs = await api.http.get("/api/docs")
    assert docs.status_code == 200 and "/api/sagas/{saga_id}/signal" in docs.text
    assert "<script" not in docs.text


async def test_operations_answer(api: Api) -> None:
    assert (await api.http.get("/api/breakers", headers=auth("viewer"))).json() == []
    letters = await api.http.get("/api/dead-letters", headers=auth("viewer"))
    assert letters.status_code == 200 and letters.json() == []
    gone = await api.http.get("/api/dead-letters/none", headers=auth("viewer"))
    assert gone.status_code == 404
    purged = await api.http.post("/api/dead-letters/purge", json={}, headers=auth("admin"))
    assert purged.status_code == 200
    await start(api, "s-1")
    stuck = await api.http.get("/api/stuck", params={"older_than": 0}, headers=auth("viewer"))
    assert [s["saga_id"] for s in stuck.json()] == ["s-1"]
    assert stuck.json()[0]["waits"][0]["signal"] == "approve"


def test_no_tokens_means_loopback_only() -> None:
    exposed = Settings(http="0.0.0.0:9999")
    with pytest.raises(ExposedWithoutTokensError, match="without tokens"):
        api_extras(exposed)
    assert "loopback only" in api_extras(Settings(http="127.0.0.1:9999")).access
    token, entry = TOKENS["admin"]
    tokens = Tokens([entry])
    assert tokens.check(token) is not None and tokens.check(token + "x") is None
    with_tokens = Settings(http="0.0.0.0:9999", api_tokens=[msgspec.to_builtins(entry)])
    assert api_extras(with_tokens).access == "API tokens required"
