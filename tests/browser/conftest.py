"""Browser tests: Playwright driving Debian's chromium against a real logkeep server
(uvicorn on real PostgreSQL and Redis, with credentials required).

Playwright's own browser download is not reachable where logkeep is built, so the browser
is launched by path; scripts/test installs the `chromium` package when it is missing.
Every page fails its test on an uncaught script error, an unexpected console error or
any dialog (alert, confirm, prompt): the explorer never opens one, and an injected script
would."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Dialog,
    Page,
    async_playwright,
)

from logkeep.config import Settings
from logkeep.db.access import AccessRepository
from logkeep.db.database import Database
from logkeep.db.repositories import LogRepository
from logkeep.db.seed import TEST_PASSWORDS
from tests.conftest import served

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 10_000


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (scripts/test installs it as root)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def secured(settings: Settings, db: Database) -> Settings:
    """Credentials required; the analyst and the viewer may read every seeded source."""
    access = AccessRepository(db.pool)
    async with db.pool.acquire() as conn:
        users = {r["username"]: r["id"] for r in await conn.fetch("SELECT id, username FROM users")}
        sources = [r["id"] for r in await conn.fetch("SELECT id FROM log_sources")]
    for name in ("analyst", "viewer"):
        await access.grant(users[name], sources, None)
    return settings.model_copy(update={"auth_required": True})


@pytest.fixture
async def server(secured: Settings) -> AsyncIterator[str]:
    async with served(secured) as base_url:
        yield base_url


@dataclass
class Watch:
    """What a page said that it should not have: errors and dialogs."""

    problems: list[str] = field(default_factory=list)
    allowed: tuple[str, ...] = ()

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not any(a in message.text for a in self.allowed):
            self.problems.append(f"console error: {message.text}")

    def page_error(self, error: Exception) -> None:
        self.problems.append(f"uncaught: {error}")

    async def dialog(self, dialog: Dialog) -> None:
        self.problems.append(f"dialog {dialog.type}: {dialog.message}")
        await dialog.dismiss()


@dataclass
class Explorer:
    base_url: str
    context: BrowserContext
    page: Page
    watch: Watch

    async def sign_in(self, username: str) -> None:
        await self.page.goto(self.base_url + "/")
        form = self.page.locator("#login-form")
        await form.locator("input[name=username]").fill(username)
        await form.locator("input[name=password]").fill(TEST_PASSWORDS[username])
        await form.locator("button[type=submit]").click()
        await self.page.locator("#explore-view").wait_for(state="visible")

    async def search(self, text: str) -> None:
        box = self.page.locator("input[name=q]")
        await box.fill(text)
        await box.press("Enter")

    def entry_ids(self) -> Any:
        return self.page.locator("#results li[data-entry-id]").evaluate_all(
            "rows => rows.map(r => Number(r.dataset.entryId))"
        )

    async def wait_for_entry(self, entry_id: int, within_ms: int = TIMEOUT_MS) -> None:
        await self.page.locator(f'#results li[data-entry-id="{entry_id}"]').wait_for(
            timeout=within_ms
        )


async def open_explorer(browser: Browser, base_url: str, watch: Watch) -> Explorer:
    context = await browser.new_context(
        base_url=base_url, accept_downloads=True, viewport={"width": 1400, "height": 900}
    )
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    page.on("console", watch.console)
    page.on("pageerror", watch.page_error)
    page.on("dialog", watch.dialog)
    return Explorer(base_url, context, page, watch)


@pytest.fixture
async def explorer(browser: Browser, server: str) -> AsyncIterator[Explorer]:
    watch = Watch()
    opened = await open_explorer(browser, server, watch)
    try:
        yield opened
    finally:
        await opened.context.close()
    assert watch.problems == []


@pytest.fixture
def logs(db: Database) -> LogRepository:
    """Writes entries straight to PostgreSQL (with rollups, cache bumps and live tail)."""
    return LogRepository(db.pool, db.redis_client, cache=db.cache, tail=db.tail)


def token() -> str:
    """A word no other entry holds, to find a test's own entries."""
    return "t" + uuid.uuid4().hex[:12]


async def write(
    logs: LogRepository, entries: list[dict[str, Any]], *, newest: datetime | None = None
) -> list[int]:
    """Entries one second apart, the last at `newest` (default: a second ago); their ids
    in the order given."""
    newest = newest or datetime.now(UTC) - timedelta(seconds=1)
    stamped = [
        {"source_id": 2, "level": "INFO", "metadata": {}, **e}
        | {"timestamp": newest - timedelta(seconds=len(entries) - 1 - i)}
        for i, e in enumerate(entries)
    ]
    ids = []
    for entry in stamped:  # one by one: each id is needed, in order
        ids.append(await logs.save_log_entry(entry))
    return ids


async def api_token(base_url: str, username: str) -> str:
    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.post(
            "/api/v1/auth/login",
            json={"username": username, "password": TEST_PASSWORDS[username]},
        )
        response.raise_for_status()
        found: str = response.json()["token"]
        return found
