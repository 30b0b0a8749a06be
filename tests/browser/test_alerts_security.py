"""The Alerts view under the access rules and under attack, in a real browser: a viewer
sees no alerts and no editor (and the API refuses them anyway); an analyst sees only
rules and sources they may read, no channel administration and no silence across every
rule; hostile text in rule names, labels, groups, comments and channel names renders as
text (any dialog or console error fails the test)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.async_api import Page, expect

from logkeep.config import Settings
from logkeep.db.access import AccessRepository
from logkeep.db.database import Database
from logkeep.db.repositories import LogRepository
from tests.browser.alerts_support import api_as, create_rule, current_tick, entries_at, evaluate
from tests.browser.conftest import Explorer, token

pytestmark = pytest.mark.slow

PAYLOADS = [
    "<script>alert('r1')</script>",
    "<img src=x onerror=alert('r2')>",
    '"><svg onload=alert(3)><a href="javascript:alert(4)">click</a>',
    "javascript:alert('r5')",
    "{{constructor.constructor('alert(6)')()}} ${alert(7)}",
]
INJECTED = ", ".join(
    f"#alerts-view {tag}" for tag in ("img", "iframe", "svg", "script", "a[href^='javascript']")
)


async def nothing_injected(page: Page) -> None:
    """No element came from the text shown, and no handler of one ran."""
    assert await page.locator(INJECTED).count() == 0
    for row in (await page.locator("#alerts-view tr").all())[:30]:
        await row.hover()


async def csrf(explorer: Explorer) -> str:
    token_: str = await explorer.page.evaluate(
        "fetch('/api/v1/auth/web/session').then(r => r.json()).then(s => s.csrf_token)"
    )
    return token_


async def test_a_viewer_sees_no_alerts_and_no_editor(explorer: Explorer) -> None:
    await explorer.sign_in("viewer")
    page = explorer.page
    await expect(page.locator("#nav-alerts")).to_be_hidden()
    await expect(page.locator("#alert-from-search")).to_be_hidden()
    for tab in ("alerts", "edit", "silences", "channels"):
        await page.goto(f"/?view=alerts&tab={tab}&q=payment")
        await expect(page.locator("#alerts-view")).to_contain_text(
            "Alert rules are for analysts and admins"
        )
        await expect(page.locator("#alerts-view form")).to_have_count(0)
        await expect(page.locator("#alerts-view table")).to_have_count(0)
    # The API refuses the viewer's own session, whatever the page shows.
    for path in ("/api/v1/alerts", "/api/v1/alert-rules", "/api/v1/silences"):
        assert (await page.request.get(path)).status == 403, path
    refused = await page.request.post(
        "/api/v1/alert-rules",
        data={"name": "x", "threshold": 1, "window_seconds": 60, "sources": [2]},
        headers={"X-CSRF-Token": await csrf(explorer)},
    )
    assert refused.status == 403


async def test_an_analyst_sees_only_what_they_may_read(
    explorer: Explorer, db: Database, server: str
) -> None:
    async with db.pool.acquire() as conn:
        analyst = await conn.fetchval("SELECT id FROM users WHERE username = 'analyst'")
    await AccessRepository(db.pool).revoke(analyst, [1, 3])  # app_errors (2) only
    async with api_as(server, "admin") as admin:
        await create_rule(admin, name="edge errors", sources=[1], threshold=1, window_seconds=60)
    async with api_as(server, "analyst") as api:
        await create_rule(api, name="app errors", sources=[2], threshold=1, window_seconds=60)
    await explorer.sign_in("analyst")
    page = explorer.page
    await page.goto("/?view=alerts&tab=rules")
    await expect(page.locator("#rule-list tbody tr")).to_have_count(1)
    await expect(page.locator("#rule-list")).to_contain_text("app errors")
    await expect(page.locator("#rule-list")).not_to_contain_text("edge errors")
    tabs = page.get_by_role("navigation", name="Alerts")
    await expect(tabs.get_by_role("link")).to_have_text(["Alerts", "Rules", "New rule", "Silences"])
    # The editor offers the analyst's sources only, never "every source"; a search on
    # another source does not become theirs.
    await page.goto("/?view=alerts&tab=edit&q=payment&source=nginx_access")
    editor = page.locator("form.rule-editor")
    await expect(editor.locator('.field[data-field="sources"] input')).to_have_count(1)
    await expect(editor.get_by_role("checkbox", name="app_errors")).not_to_be_checked()
    await expect(editor.get_by_role("checkbox", name="every source")).to_have_count(0)
    await expect(page.locator("#alerts-view")).to_contain_text(
        "Not among your sources: nginx_access"
    )
    await editor.get_by_label("Name", exact=True).fill("mine")
    await editor.get_by_role("button", name="Create rule").click()
    await expect(editor.locator('.field[data-field="sources"] .field-error')).to_have_text(
        "choose at least one of your sources"
    )
    # No silence across every rule, no channels.
    await page.goto("/?view=alerts&tab=silences")
    rules = page.locator("form.silence-form select[name=rule_id] option")
    await expect(rules).to_have_text(["app errors"])
    await page.goto("/?view=alerts&tab=channels")
    await expect(page.locator("form.channel-form")).to_have_count(0)
    # The API refuses what the page does not offer.
    token_ = await csrf(explorer)
    for path, body in (
        (
            "/api/v1/alert-rules",
            {"name": "y", "threshold": 1, "window_seconds": 60, "sources": [1]},
        ),
        ("/api/v1/alert-rules", {"name": "z", "threshold": 1, "window_seconds": 60}),
        ("/api/v1/alert-channels", {"name": "c", "kind": "email", "to": ["a@example.com"]}),
        ("/api/v1/silences", {"matchers": {"team": "*"}, "ends_at": "2999-01-01T00:00:00Z"}),
    ):
        response = await page.request.post(path, data=body, headers={"X-CSRF-Token": token_})
        assert response.status == 403, (path, body, await response.text())


async def test_hostile_text_in_alerts_renders_as_text(
    explorer: Explorer, logs: LogRepository, db: Database, secured: Settings, server: str
) -> None:
    word = token()
    tick = current_tick()
    for payload in PAYLOADS:
        await entries_at(
            logs, tick - timedelta(seconds=30), 2, f"{word} {payload}", metadata={"html": payload}
        )
    rule_ids = []
    async with api_as(server, "admin") as api:
        for n, payload in enumerate(PAYLOADS):
            rule = await create_rule(
                api, name=f"{payload} #{n}", description=payload, query=word, sources=[2],
                threshold=1, window_seconds=300, interval_seconds=60, group_by="metadata.html",
                labels={"team": payload},
            )  # fmt: skip
            rule_ids.append(rule["id"])
        silenced = await api.post(
            "/api/v1/silences",
            json={"rule_id": rule_ids[0], "matchers": {"team": PAYLOADS[1]},
                  "ends_at": (tick + timedelta(hours=1)).isoformat(), "comment": PAYLOADS[2]},
        )  # fmt: skip
        assert silenced.status_code == 201, silenced.text
        channel = await api.post(
            "/api/v1/alert-channels",
            json={"name": PAYLOADS[1], "kind": "email", "to": ["ops@example.com"]},
        )
        assert channel.status_code == 201, channel.text
    await evaluate(db, secured, rule_ids, tick)
    await explorer.sign_in("admin")
    page = explorer.page

    await page.goto("/?view=alerts")
    firing = page.locator("#alert-list tr.alert-firing")
    await expect(firing).to_have_count(len(PAYLOADS) ** 2)  # each rule, each payload's group
    names = await page.locator("#alert-list .rule-name").all_inner_texts()
    assert sorted(names) == sorted(f"{p} #{n}" for n, p in enumerate(PAYLOADS))
    groups = set(await page.locator("#alert-list td.group").all_inner_texts())
    assert groups == {f"html = {p}" for p in PAYLOADS}
    await nothing_injected(page)
    await page.goto("/?view=alerts&tab=rules")
    await expect(page.locator("#rule-list")).to_contain_text(f"team={PAYLOADS[0]}")
    await nothing_injected(page)
    await page.goto(f"/?view=alerts&tab=history&rule={rule_ids[1]}")
    await expect(page.locator("#history")).to_contain_text(f"html = {PAYLOADS[3]}")
    await nothing_injected(page)
    await page.goto(f"/?view=alerts&tab=edit&rule={rule_ids[2]}")
    editor = page.locator("form.rule-editor")
    await expect(editor.get_by_label("Name", exact=True)).to_have_value(f"{PAYLOADS[2]} #2")
    await expect(editor.get_by_label("Labels")).to_have_value(f"team={PAYLOADS[2]}")
    await editor.get_by_role("button", name="Preview").click()
    await expect(editor.locator(".preview-list")).to_contain_text(f"html = {PAYLOADS[4]}")
    await nothing_injected(page)
    await page.goto(f"/?view=alerts&tab=silences&rule={rule_ids[0]}")
    await expect(page.locator("#silence-list")).to_contain_text(PAYLOADS[2])
    await expect(page.locator("#silence-list")).to_contain_text(f"team={PAYLOADS[1]}")
    await expect(page.locator("form.silence-form select[name=group]")).to_contain_text(
        f"html = {PAYLOADS[0]}"
    )
    await nothing_injected(page)
    await page.goto("/?view=alerts&tab=channels")
    await expect(page.locator("#channel-list")).to_contain_text(PAYLOADS[1])
    await nothing_injected(page)
    await page.wait_for_timeout(300)  # a delayed payload would have fired by now
    assert explorer.watch.problems == []


async def test_a_rule_whose_owner_lost_a_grant_shows_its_error(
    explorer: Explorer, db: Database, secured: Settings, server: str
) -> None:
    async with api_as(server, "analyst") as api:
        rule = await create_rule(
            api, name="gateway", sources=[1], threshold=1, window_seconds=60, interval_seconds=60
        )
    async with db.pool.acquire() as conn:
        analyst = await conn.fetchval("SELECT id FROM users WHERE username = 'analyst'")
    await AccessRepository(db.pool).revoke(analyst, [1])
    await evaluate(db, secured, [rule["id"]], current_tick())
    await explorer.sign_in("admin")
    page = explorer.page
    await page.goto("/?view=alerts")
    block = page.locator(f'#alert-list tbody[data-rule-id="{rule["id"]}"]')
    await expect(block.locator(".rule-head .state-error")).to_be_visible()
    async with db.pool.acquire() as conn:
        reason = await conn.fetchval(
            "SELECT reason FROM alert_rule_status WHERE rule_id = $1", rule["id"]
        )
    assert reason
    await expect(block.locator("tr.rule-error")).to_contain_text(reason)
    await expect(page.locator(".alert-counters")).to_contain_text("1 rule failing")
