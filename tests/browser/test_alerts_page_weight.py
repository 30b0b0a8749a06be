"""What the explorer transfers on a cold load, with the alerting modules loaded only
when the Alerts view opens: the search page does not grow with them."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import Explorer

pytestmark = pytest.mark.slow

RESOURCES = """() => {
    const nav = performance.getEntriesByType('navigation')[0];
    const all = [nav, ...performance.getEntriesByType('resource')];
    return all.map(e => ({name: e.name, transfer: e.transferSize, decoded: e.decodedBodySize}));
}"""


def assets(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if "/api/" not in e["name"]]


def summary(entries: list[dict[str, Any]]) -> str:
    files = assets(entries)
    sent = sum(e["transfer"] for e in files)
    decoded = sum(e["decoded"] for e in files)
    return f"{len(files)} files, {sent / 1024:.1f} KB transferred, {decoded / 1024:.1f} KB"


async def test_cold_load_of_the_search_page(explorer: Explorer) -> None:
    await explorer.sign_in("admin")
    page = explorer.page
    cdp = await explorer.context.new_cdp_session(page)
    await cdp.send("Network.clearBrowserCache")
    await page.goto("/?since=1h")
    await page.locator("#summary").wait_for()
    await page.wait_for_load_state("networkidle")
    entries = await page.evaluate(RESOURCES)
    print(f"\ncold load of /: {summary(entries)}")
    names = [e["name"] for e in assets(entries)]
    assert not [n for n in names if "/alert" in n]
    # Opening the Alerts view fetches its modules and stylesheet, once.
    await page.get_by_role("link", name="Alerts", exact=True).click()
    await page.locator("#alert-list, #alerts-view p.muted").first.wait_for()
    await page.wait_for_load_state("networkidle")
    after = await page.evaluate(RESOURCES)
    added = [e for e in assets(after) if e["name"] not in names]
    print(f"opening Alerts adds: {summary(added)}")
    assert {n.rsplit("/", 1)[-1] for n in (e["name"] for e in added)} == {
        "alerts.js", "alert_common.js", "alert_editor.js", "alert_preview.js",
        "alert_silences.js", "alert_channel_admin.js", "alerts.css",
    }  # fmt: skip
