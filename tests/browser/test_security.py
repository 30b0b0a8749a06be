"""The explorer under attack, in a real browser: log text that is HTML or script renders
as text and runs nothing (any dialog or console error fails the test), the session
cookie is out of scripts' reach, the page's CSP forbids inline code, and a form posted
from another site is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from logkeep.api.local import serve_locally
from logkeep.db.repositories import LogRepository
from tests.browser.conftest import Explorer, Watch, open_explorer, token, write

pytestmark = pytest.mark.slow

PAYLOADS = [
    "<script>alert('m1')</script>",
    "<img src=x onerror=alert('m2')>",
    "javascript:alert('m3')",
    '"><svg onload=alert(4)><a href="javascript:alert(5)">click</a>',
    '<iframe srcdoc="<script>parent.alert(6)</script>"></iframe>',
    "{{constructor.constructor('alert(7)')()}} ${alert(8)}",
]
HOSTILE_METADATA = {
    "html": "<img src=x onerror=alert('meta1')>",
    "link": "javascript:alert('meta2')",
    "nested": {"deep": "<script>alert('meta3')</script>"},
    "<b onmouseover=alert(9)>key</b>": "<u>value</u>",
    "__proto__": {"polluted": "<img src=y onerror=alert(10)>"},
}


async def test_hostile_messages_and_metadata_render_as_text(
    explorer: Explorer, logs: LogRepository
) -> None:
    word = token()
    ids = await write(
        logs,
        [
            {"message": f"{word} {p}", "level": "ERROR", "metadata": HOSTILE_METADATA}
            for p in PAYLOADS
        ],
    )
    await explorer.sign_in("admin")
    page = explorer.page
    await page.goto(f"/?q={word}&since=1h")
    await expect(page.locator("#results li[data-entry-id]")).to_have_count(len(PAYLOADS))
    rendered = await page.locator("#results .msg").all_inner_texts()
    assert sorted(rendered) == sorted(f"{word} {p}" for p in PAYLOADS)
    # Hover everything once: no handler may fire from log text.
    for row in await page.locator("#results li[data-entry-id]").all():
        await row.hover()
    # Facets show hostile metadata values, as text.
    await expect(page.locator("#facets")).to_contain_text("<img src=x onerror=alert('meta1')>")
    for entry_id in ids:
        await page.keyboard.press("Escape")  # the drawer covers part of the list
        await page.locator(f'#results li[data-entry-id="{entry_id}"]').click()
        await expect(page.locator("#detail-body pre.message")).to_contain_text(word)
        await expect(page.locator("#detail-body")).to_contain_text(
            "<script>alert('meta3')</script>"
        )
        await expect(page.locator("#detail-body")).to_contain_text(
            "<b onmouseover=alert(9)>key</b>"
        )
    await page.locator("#tab-context").click()
    await expect(page.locator("#detail-body li.anchor")).to_be_visible()
    for row in await page.locator("#detail-body li").all():
        await row.hover()
    # Nothing from the entries became an element.
    injected = ", ".join(
        f"{root} {tag}"
        for root in ("#app", "#detail")
        for tag in ("img", "iframe", "svg", "script", "a[href^='javascript']")
    )
    assert await page.locator(injected).count() == 0
    assert await page.evaluate("Object.prototype.polluted") is None
    await page.wait_for_timeout(300)  # a delayed payload would have fired by now
    assert explorer.watch.problems == []


async def test_page_policy_and_cookie(explorer: Explorer) -> None:
    await explorer.sign_in("viewer")
    page = explorer.page
    response = await page.request.get("/")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["x-frame-options"] == "DENY"
    html = await response.text()
    assert "<script>" not in html and " style=" not in html and " onclick=" not in html
    # Scripts see no session: the cookie is HttpOnly.
    assert "logkeep_session" not in await page.evaluate("document.cookie")
    # An inline script, were one ever inserted, is not run: the policy refuses it.
    ran = await page.evaluate(
        """() => new Promise((done) => {
            const s = document.createElement('script');
            s.textContent = 'window.__injected = true';
            document.body.append(s);
            setTimeout(() => done(window.__injected === true), 100);
        })"""
    )
    assert ran is False
    assert any("Content Security Policy" in p for p in explorer.watch.problems)
    explorer.watch.problems.clear()  # the refusal itself is reported as a console error


@pytest.fixture
async def attacker() -> AsyncIterator[str]:
    """Another site (localhost, where logkeep is 127.0.0.1) with forms aimed at logkeep."""

    async def form(request: Request) -> HTMLResponse:
        target = request.query_params["target"]
        kind = request.query_params.get("kind", "json")
        if kind == "json":
            # A text/plain body that reads as JSON: the classic way to fake a JSON post.
            field = '<input name=\'{"name":"evil","params":{"q":"x"},"pad":"\' value=\'"}\'>'
            enctype = "text/plain"
        else:
            field = ""
            enctype = "application/x-www-form-urlencoded"
        page = (
            f'<form method="post" action="{target}" enctype="{enctype}">{field}</form>'
            "<script>document.forms[0].submit()</script>"
        )
        return HTMLResponse(page)

    app = Starlette(routes=[Route("/", form)])
    async with serve_locally(app) as base_url:
        yield base_url.replace("127.0.0.1", "localhost")


async def test_a_cross_site_form_post_is_refused(
    browser: Browser, server: str, attacker: str
) -> None:
    watch = Watch(allowed=("Failed to load resource",))  # the refused posts
    explorer = await open_explorer(browser, server, watch)
    try:
        await explorer.sign_in("analyst")
        page = explorer.page
        for target, kind in (
            (f"{server}/api/v1/saved-searches", "json"),
            (f"{server}/api/v1/auth/web/logout", "form"),
        ):
            tab = await explorer.context.new_page()
            tab.on("console", watch.console)
            tab.on("dialog", watch.dialog)
            async with tab.expect_response(target) as answer:
                await tab.goto(f"{attacker}/?target={target}&kind={kind}", wait_until="commit")
            response = await answer.value
            assert response.status in (401, 403), (target, response.status)
            await tab.close()
        # Still signed in (the logout was refused), and nothing was saved.
        await page.goto(server + "/")
        await expect(page.locator("#explore-view")).to_be_visible()
        saved = await page.request.get("/api/v1/saved-searches")
        assert saved.status == 200
        assert [s["name"] for s in await saved.json()] == []
        # The same post from the page itself, with its CSRF token, works.
        created = await page.evaluate(
            """async () => {
                const s = await (await fetch('/api/v1/auth/web/session')).json();
                const r = await fetch('/api/v1/saved-searches', {method: 'POST',
                  headers: {'Content-Type': 'application/json', 'X-CSRF-Token': s.csrf_token},
                  body: JSON.stringify({name: 'mine', params: {q: 'x'}})});
                return r.status;
            }"""
        )
        assert created == 201
    finally:
        await explorer.context.close()
    assert watch.problems == []
