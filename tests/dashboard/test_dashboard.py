"""The dashboard in a real browser (Debian's chromium, driven by Playwright), on a
deployment running on the real RabbitMQ and Redis (``conftest.board``).

Each test waits for what the page shows (Playwright's ``expect`` polls the DOM),
never for a time; the pages update themselves through htmx's polling.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from desk import NAME
from playwright.async_api import Browser, Page, expect

from coordinator.client import start_checked

if TYPE_CHECKING:  # the fixture's type; conftest modules are not imported by name
    from conftest import Board

pytestmark = pytest.mark.timeout(60)

DOCS = Path(__file__).parents[2] / "docs"
SEEN = 15_000  # ms: how long a page may take to show a change (it polls every 2 s)


@pytest.fixture
async def page(browser: Browser, board: Board) -> AsyncIterator[Page]:
    context = await browser.new_context(base_url=board.url, viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # every hx-confirm is answered yes
    yield page
    await context.close()


async def log_in(page: Page, board: Board, role: str) -> None:
    await page.goto("/ui/sagas")
    await expect(page).to_have_url(f"{board.url}/ui/login")
    await page.fill("#token", board.tokens[role])
    await page.click("button[type=submit]")
    await expect(page.locator(".role")).to_have_text(f"{role}-user · {role}")


async def start(board: Board, saga_id: str, **data: object) -> None:
    await start_checked(board.client, NAME, {"id": saga_id, **data}, saga_id, accept_timeout=10)


async def test_a_running_saga_moves_to_completed_and_the_list_filters(
    page: Page, board: Board
) -> None:
    await log_in(page, board, "operator")
    await start(board, "done-1")
    await start(board, "held-1", hold=True)
    await page.goto("/ui/sagas")
    held = page.locator("tr[data-saga=held-1] .status")
    await expect(held).to_have_text("running")
    await expect(page.locator("tr[data-saga=done-1] .status")).to_have_text(
        "completed", timeout=SEEN
    )

    board.controls.gate("held-1").set()  # no reload from here: the list polls
    await expect(held).to_have_text("completed", timeout=SEEN)
    await expect(page.locator("a.status[data-status=completed] b")).to_have_text("2", timeout=SEEN)
    await page.screenshot(path=str(DOCS / "dashboard-sagas.png"))

    await start(board, "denied-1", deny=True)
    await board.client.wait("denied-1", timeout=20)
    await page.click("a.status[data-status=compensated]")
    await expect(page).to_have_url(f"{board.url}/ui/sagas?status=compensated&name=")
    await expect(page.locator("tr[data-saga]")).to_have_count(1)
    await expect(page.locator("tr[data-saga=denied-1]")).to_be_visible()


async def test_a_failed_saga_is_retried_from_its_page(page: Page, board: Board) -> None:
    board.controls.jammed = True
    await start(board, "jam-1", deny=True, note="fragile")
    state = await board.client.wait("jam-1", timeout=20)
    assert state is not None and state.status == "failed"
    await log_in(page, board, "admin")
    await page.goto("/ui/sagas?status=failed")
    await page.click("tr[data-saga=jam-1] a")
    await expect(page.locator("#saga-status")).to_have_text("failed")
    await expect(page.locator("tr[data-step=reserve] .status")).to_have_text("compensation_failed")
    await expect(page.locator("table.timeline")).to_contain_text("compensation reserve #2 failed")
    await expect(page.locator("pre.mermaid svg")).to_be_visible()  # Mermaid drew the graph

    board.controls.jammed = False
    await page.click("button[data-action=retry]")
    await expect(page.locator("#saga-status")).to_have_text("compensated", timeout=SEEN)
    await expect(page.locator(".notice")).to_contain_text("retry taken")
    await expect(page.locator("table.timeline")).to_contain_text("retry by admin-user")
    await expect(page.locator("button[data-action]")).to_have_count(0)  # it has ended
    await page.screenshot(path=str(DOCS / "dashboard-saga.png"), full_page=True)


async def test_a_viewer_sees_no_action_button(page: Page, board: Board) -> None:
    await start(board, "watched-1", hold=True)
    await log_in(page, board, "viewer")
    await page.goto("/ui/sagas/watched-1")
    await expect(page.locator("#saga-status")).to_have_text("running")
    await expect(page.locator("tr[data-step=reserve] .status")).to_have_text("dispatched")
    await expect(page.locator("section.actions")).to_have_count(0)
    await expect(page.locator("form[action*='/ui/sagas/']")).to_have_count(0)

    # The same page shows the buttons to an operator: the check above can fail.
    await page.click("button.link")  # log out
    await log_in(page, board, "operator")
    await page.goto("/ui/sagas/watched-1")
    await expect(page.locator("button[data-action=cancel]")).to_be_visible()
    await expect(page.locator("button[data-action=pause]")).to_be_visible()


async def test_the_breaker_page_shows_a_breaker_opening(page: Page, board: Board) -> None:
    await log_in(page, board, "admin")
    await page.goto("/ui/breakers")
    pager = page.locator("tr[data-service=pager]")
    await expect(pager.locator(".breaker")).to_have_text("closed")
    await start(board, "paged-1", page_down=True)
    await expect(pager.locator(".breaker")).to_have_text("open", timeout=SEEN)
    await expect(pager.locator("td").nth(4)).to_contain_text("paged-1", timeout=SEEN)
    await expect(pager.locator("button[data-action=close]")).to_be_visible()  # admin overrides


async def test_saga_data_is_rendered_as_text(page: Page, board: Board) -> None:
    evil = "<script>window.pwned = true</script><img src=x onerror='window.pwned=true'>"
    await start(board, "evil-1", note=evil)
    await board.client.wait("evil-1", timeout=20)
    await log_in(page, board, "admin")
    await page.goto("/ui/sagas/evil-1")
    await expect(page.locator("#saga-data")).to_contain_text(evil)
    assert await page.evaluate("window.pwned === undefined")
    assert await page.locator("#saga-data script, #saga-data img").count() == 0


async def test_a_post_without_the_csrf_token_is_refused(page: Page, board: Board) -> None:
    board.controls.jammed = True
    await start(board, "csrf-1", deny=True)
    await board.client.wait("csrf-1", timeout=20)
    await log_in(page, board, "admin")
    await page.goto("/ui/sagas/csrf-1")
    refused = await page.request.post("/ui/sagas/csrf-1/retry", form={}, max_redirects=0)
    assert refused.status == 403
    assert (await board.client.state("csrf-1")).status == "failed"  # type: ignore[union-attr]
    # With the page's token the same post goes through.
    token = await page.locator("input[name=_csrf_token]").first.get_attribute("value")
    taken = await page.request.post(
        "/ui/sagas/csrf-1/retry", form={"_csrf_token": token or ""}, max_redirects=0
    )
    assert taken.status == 302 or taken.status == 303
