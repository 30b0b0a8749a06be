"""The explorer's journeys in a real browser against a real logkeep: sign in, search by
word, level and source, reload and Back, an entry's detail and a metadata filter from it,
context before and after, scrolling past the first page, live tail with pause and resume,
export, administration with the rule preview, and a viewer who sees none of it."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from playwright.async_api import Route, expect

from logkeep.db.repositories import LogRepository
from tests.browser.conftest import Explorer, api_token, token, write

pytestmark = pytest.mark.slow


def url_params(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query)


async def test_sign_in_search_reload_and_back(explorer: Explorer, logs: LogRepository) -> None:
    word = token()
    ids = await write(
        logs,
        [
            {"message": f"{word} checkout failed", "level": "ERROR"},
            {"message": f"{word} checkout slow", "level": "WARN"},
            {"message": f"{word} from the edge", "level": "ERROR", "source_id": 1},
            {"message": "unrelated entry", "level": "ERROR"},
        ],
    )
    await explorer.sign_in("admin")
    page = explorer.page
    # The session cookie: HttpOnly, SameSite=Strict, invisible to scripts.
    cookies = {c["name"]: c for c in await explorer.context.cookies()}
    session = cookies["logkeep_session"]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"
    assert session["secure"] is False  # plain http here: Secure is set over https only
    assert session["value"] not in await page.evaluate("document.cookie")
    assert "lks_" not in await page.evaluate(
        "JSON.stringify(localStorage) + JSON.stringify(sessionStorage)"
    )

    # A word: newest first, every match, the word highlighted.
    await explorer.search(word)
    # (The entries are also among the newest shown before this search: wait for the count.)
    await expect(page.locator("#results li[data-entry-id]")).to_have_count(3)
    assert await explorer.entry_ids() == [ids[2], ids[1], ids[0]]
    marks = await page.locator("#results mark").all_inner_texts()
    assert marks and {m.lower() for m in marks} == {word}
    assert ("q", word) in url_params(page.url)

    # Level ERROR and source app_errors: only the first entry.
    for level in ("DEBUG", "INFO", "WARN", "FATAL"):
        await page.get_by_role("checkbox", name=level, exact=True).uncheck()
    await page.locator("#source-add").select_option("app_errors")
    await expect(page.locator("#results li[data-entry-id]")).to_have_count(1)
    assert await explorer.entry_ids() == [ids[0]]
    params = url_params(page.url)
    assert ("level", "ERROR") in params
    assert ("source", "app_errors") in params
    assert ("q", word) in params

    # Reload: the same search from the address alone.
    await page.reload()
    await explorer.wait_for_entry(ids[0])
    assert await explorer.entry_ids() == [ids[0]]
    await expect(page.locator("input[name=q]")).to_have_value(word)
    await expect(page.get_by_role("checkbox", name="WARN", exact=True)).not_to_be_checked()

    # Back walks to the search before the source was added: both ERROR entries.
    await page.go_back()
    await expect(page.locator("#results li[data-entry-id]")).to_have_count(2)
    assert await explorer.entry_ids() == [ids[2], ids[0]]

    # No matches is said plainly; an invalid query shows the API's reason.
    await explorer.search(token())
    await expect(page.locator("#results li.empty")).to_contain_text("No matches")
    explorer.watch.allowed = ("Failed to load resource",)  # the 422 below
    await page.goto("/?q=%21%21%21&since=1h")
    await expect(page.locator("#search-error")).to_contain_text("q: has no words to search for")


async def test_keyboard(explorer: Explorer, logs: LogRepository) -> None:
    word = token()
    ids = await write(logs, [{"message": f"{word} line {n}"} for n in range(3)])
    await explorer.sign_in("analyst")
    page = explorer.page
    await page.goto(f"/?q={word}")
    await explorer.wait_for_entry(ids[0])
    await page.locator("body").click(position={"x": 5, "y": 400})
    await page.keyboard.press("/")
    await expect(page.locator("input[name=q]")).to_be_focused()
    await page.keyboard.press("End")  # "/" selects the words, to type over them
    await page.keyboard.type("jk")  # typed into the box, not taken as shortcuts
    await expect(page.locator("input[name=q]")).to_have_value(f"{word}jk")
    await page.keyboard.press("Escape")
    await page.keyboard.press("j")
    await page.keyboard.press("j")
    await page.keyboard.press("k")
    await expect(page.locator("#results li.selected")).to_have_attribute(
        "data-entry-id", str(ids[2])
    )
    await page.keyboard.press("j")
    await page.keyboard.press("Enter")
    await expect(page.locator("#detail")).to_be_visible()
    await expect(page.locator("#detail-body pre.message")).to_have_text(f"{word} line 1")
    await page.keyboard.press("Escape")
    await expect(page.locator("#detail")).to_be_hidden()
    await page.keyboard.press("?")
    await expect(page.locator("#help")).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(page.locator("#help")).to_be_hidden()


async def test_detail_filter_for_a_metadata_value_and_permalink(
    explorer: Explorer, logs: LogRepository
) -> None:
    word = token()
    ids = await write(
        logs,
        [
            {
                "message": f"{word} payment declined",
                "metadata": {"card": {"brand": "visa"}, "code": 51},
            },
            {
                "message": f"{word} payment declined",
                "metadata": {"card": {"brand": "amex"}, "code": 51},
            },
            {
                "message": f"{word} payment declined",
                "metadata": {"card": {"brand": "visa"}, "code": "51"},
            },
        ],
    )
    await explorer.sign_in("viewer")
    page = explorer.page
    await page.goto(f"/?q={word}&since=1h")
    await explorer.wait_for_entry(ids[0])
    await page.locator(f'li[data-entry-id="{ids[1]}"]').click()
    detail = page.locator("#detail")
    await expect(detail).to_be_visible()
    await expect(detail.locator(".detail-body > ul.json-tree")).to_contain_text('"amex"')
    # The permalink opens this entry on its own.
    permalink = await page.locator("#permalink").get_attribute("href")
    assert permalink is not None and f"entry={ids[1]}" in permalink
    # Filter for the number 51 (not the text "51"), then out the brand visa.
    await detail.get_by_role("button", name="Filter for metadata.code").click()
    await expect(page.locator("#results li[data-entry-id]")).to_have_count(2)
    assert sorted(await explorer.entry_ids()) == [ids[0], ids[1]]
    assert ("metadata.code", "51") in url_params(page.url)
    await page.locator(f'li[data-entry-id="{ids[0]}"]').click()
    await detail.get_by_role("button", name="Filter out metadata.card.brand").click()
    await expect(page.locator("#results li[data-entry-id]")).to_have_count(1)
    assert await explorer.entry_ids() == [ids[1]]
    assert ("not.metadata.card.brand", "visa") in url_params(page.url)

    await page.goto(permalink)
    await expect(page.locator("#detail pre.message")).to_have_text(f"{word} payment declined")
    await expect(page.locator("#detail-body > ul.json-tree")).to_contain_text('"amex"')


async def test_context_before_and_after(explorer: Explorer, logs: LogRepository) -> None:
    word = token()
    ids = await write(
        logs, [{"message": f"{word} step {n:03d}", "source_id": 3} for n in range(80)]
    )
    # Another source's entries in the same seconds are not context.
    await write(logs, [{"message": f"{word} elsewhere {n}", "source_id": 1} for n in range(5)])
    await explorer.sign_in("admin")
    page = explorer.page
    await page.goto(f"/?q={word}%20040&since=1h")
    await explorer.wait_for_entry(ids[40])
    await page.locator(f'li[data-entry-id="{ids[40]}"]').click()
    await page.locator("#tab-context").click()
    context = page.locator("#detail-body ol.context li[data-entry-id]")
    await expect(page.locator("#detail-body li.anchor")).to_have_attribute(
        "data-entry-id", str(ids[40])
    )
    # 25 lines each way first; scrolling (or the buttons) loads more in either direction.
    await expect(context.first).to_have_attribute("data-entry-id", str(ids[15]))
    await expect(context.last).to_have_attribute("data-entry-id", str(ids[65]))
    await page.get_by_role("button", name="Load newer").click()
    await expect(context.last).to_have_attribute("data-entry-id", str(ids[79]))
    await expect(page.get_by_role("button", name="Load newer")).to_be_hidden()
    older = page.get_by_role("button", name="Load older")
    if await older.is_visible():
        await older.click()
    await expect(page.locator(f'#detail-body li[data-entry-id="{ids[0]}"]')).to_be_visible()
    texts = await context.locator(".msg").all_inner_texts()
    own = [t for t in texts if t.startswith(word)]
    assert own == [f"{word} step {n:03d}" for n in range(80)]


async def test_scroll_past_the_first_page(explorer: Explorer, logs: LogRepository) -> None:
    word = token()
    newest = datetime.now(UTC) - timedelta(seconds=1)
    await logs.save_many(
        {"message": f"{word} {n}", "source_id": 1, "timestamp": newest - timedelta(seconds=n)}
        for n in range(260)
    )
    await explorer.sign_in("admin")
    page = explorer.page
    await page.goto(f"/?q={word}&since=1h")
    rows = page.locator("#results li[data-entry-id]")
    await expect(rows).to_have_count(100)
    for _ in range(6):
        await page.locator("#sentinel").scroll_into_view_if_needed()
        await page.mouse.wheel(0, 20000)
        if await rows.count() == 260:
            break
        await page.wait_for_timeout(300)
    await expect(rows).to_have_count(260)
    await expect(page.locator("#end-note")).to_contain_text("260 entries")
    messages = await rows.locator(".msg").all_inner_texts()
    assert messages == [f"{word} {n}" for n in range(260)]


async def test_live_tail_shows_a_new_entry_and_counts_while_paused(
    explorer: Explorer, server: str
) -> None:
    word = token()
    await explorer.sign_in("analyst")
    page = explorer.page
    await page.goto(f"/?q={word}&since=5m")
    await expect(page.locator("#results li.empty")).to_be_visible()
    await page.get_by_role("button", name="Live", exact=True).click()
    await expect(page.locator("#live-status")).to_have_text("live")
    await page.wait_for_timeout(300)  # the tail reads from "now" once subscribed
    key = await api_token(server, "admin")
    async with httpx.AsyncClient(
        base_url=server, headers={"Authorization": f"Bearer {key}"}
    ) as client:
        sent = time.monotonic()
        created = await client.post(
            "/api/v1/logs",
            json={"source": "app_errors", "message": f"{word} arrived", "level": "error"},
        )
        assert created.status_code == 201, created.text
        await explorer.wait_for_entry(created.json()["id"], within_ms=2000)
        assert time.monotonic() - sent < 2.0
        # Another word's entry does not match the search.
        await client.post("/api/v1/logs", json={"source": "app_errors", "message": "other words"})

        await page.get_by_role("button", name="Pause").click()
        held = []
        for n in range(3):
            r = await client.post(
                "/api/v1/logs", json={"source": "app_errors", "message": f"{word} held {n}"}
            )
            held.append(r.json()["id"])
        await expect(page.locator("#arrivals")).to_contain_text("3 new entries since pausing")
        assert await explorer.entry_ids() == [created.json()["id"]]
        await page.get_by_role("button", name="Resume").click()
        await expect(page.locator("#results li[data-entry-id]")).to_have_count(4)
        assert await explorer.entry_ids() == [*reversed(held), created.json()["id"]]
    await page.get_by_role("button", name="Live", exact=True).click()
    await expect(page.get_by_role("button", name="Live", exact=True)).to_have_attribute(
        "aria-pressed", "false"
    )


async def test_export_downloads_the_rows(explorer: Explorer, logs: LogRepository) -> None:
    word = token()
    ids = await write(logs, [{"message": f"{word} row {n}, with a comma"} for n in range(5)])
    await explorer.sign_in("viewer")
    page = explorer.page
    await page.goto(f"/?q={word}&since=1h")
    await explorer.wait_for_entry(ids[0])
    await page.locator("#export-menu summary").click()
    async with page.expect_download() as info:
        await page.locator("#export-csv").click()
    download = await info.value
    assert download.suggested_filename == "logs.csv"
    path = await download.path()
    rows = list(csv.DictReader(io.StringIO(path.read_text("utf-8"))))
    assert [int(r["id"]) for r in rows] == list(reversed(ids))
    assert rows[0]["message"] == f"{word} row 4, with a comma"
    async with page.expect_download() as info:
        await page.locator("#export-ndjson").click()
    ndjson = (await (await info.value).path()).read_text("utf-8").splitlines()
    assert len(ndjson) == 5


async def test_admin_edits_a_rule_with_the_preview(explorer: Explorer, server: str) -> None:
    await explorer.sign_in("admin")
    page = explorer.page
    await page.get_by_role("link", name="Administration").click()
    await page.get_by_role("button", name="Edit db_slow_queries").click()
    editor = page.locator("#source-editor")
    rules = {
        "pattern": r"took (?P<duration_ms>[0-9]+) ms: (?P<statement>.*)",
        "level_by_duration_ms": {"500": "WARN", "default": "INFO"},
    }
    await editor.get_by_label("Parsing rules (JSON)").fill(json.dumps(rules))
    await editor.get_by_label("Sample line").fill("took 750 ms: SELECT 1")
    await editor.get_by_role("button", name="Preview").click()
    result = editor.locator(".preview-result")
    await expect(result).to_contain_text("Parsed")
    await expect(result).to_contain_text("WARN")
    await expect(result).to_contain_text('"duration_ms": 750')
    # A line that does not fit is shown as ingest would keep it.
    await editor.get_by_label("Sample line").fill("something else")
    await editor.get_by_role("button", name="Preview").click()
    await expect(result).to_contain_text("Does not fit the rules")
    # Rules that would be refused are refused before saving, with the reason.
    await editor.get_by_label("Parsing rules (JSON)").fill('{"pattern": "(unclosed"}')
    # The browser logs the refusal (422) as it arrives: allowed before the click.
    explorer.watch.allowed = ("Failed to load resource",)
    await editor.get_by_role("button", name="Preview").click()
    await expect(editor.locator(".error")).to_contain_text("pattern")
    await editor.get_by_label("Parsing rules (JSON)").fill(json.dumps(rules))
    await editor.get_by_role("button", name="Save rules").click()
    await expect(editor.locator(".ok")).to_contain_text("Saved db_slow_queries")
    key = await api_token(server, "admin")
    async with httpx.AsyncClient(
        base_url=server, headers={"Authorization": f"Bearer {key}"}
    ) as client:
        sources = (await client.get("/api/v1/sources")).json()
    saved = next(s for s in sources if s["name"] == "db_slow_queries")
    assert saved["parsing_rules"] == rules


async def test_viewer_sees_no_administration_and_cannot_reach_it(explorer: Explorer) -> None:
    await explorer.sign_in("viewer")
    page = explorer.page
    await expect(page.locator("#nav-admin")).to_be_hidden()
    await expect(page.locator("#saved-menu")).to_be_hidden()  # analysts and admins only
    await page.goto("/?view=admin&tab=users")
    await expect(page.locator("#admin-view")).to_contain_text("Administration is for admins")
    await expect(page.locator("#admin-view table")).to_have_count(0)
    # The API refuses the viewer's session itself, whatever the page shows.
    for path in ("/api/v1/users", "/api/v1/sources", "/api/v1/api-keys"):
        response = await page.request.get(path)
        assert response.status == 403, path
    csrf = await page.evaluate(
        "fetch('/api/v1/auth/web/session').then(r => r.json()).then(s => s.csrf_token)"
    )
    refused = await page.request.post(
        "/api/v1/sources/preview",
        data={"format_type": "text", "line": "x"},
        headers={"X-CSRF-Token": csrf},
    )
    assert refused.status == 403


async def test_sign_out_ends_the_session(explorer: Explorer, server: str) -> None:
    await explorer.sign_in("analyst")
    page = explorer.page
    cookie = next(c for c in await explorer.context.cookies() if c["name"] == "logkeep_session")
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.locator("#login-form")).to_be_visible()
    assert not [c for c in await explorer.context.cookies() if c["name"] == "logkeep_session"]
    # The token itself is dead, not only forgotten by the browser.
    async with httpx.AsyncClient(
        base_url=server, cookies={"logkeep_session": cookie["value"]}
    ) as client:
        response = await client.get("/api/v1/auth/me")
    assert response.status_code == 401
    assert re.search("credentials", response.text)


async def test_histogram_drag_zooms_and_a_click_narrows_to_a_bar(
    explorer: Explorer, logs: LogRepository
) -> None:
    word = token()
    await write(logs, [{"message": f"{word} {n}", "level": "WARN"} for n in range(30)])
    await explorer.sign_in("admin")
    page = explorer.page
    await page.goto(f"/?q={word}&since=6h")
    await expect(page.locator("#histogram-legend")).to_contain_text("30 in window")
    plot = page.locator("#histogram .u-over")
    box = await plot.bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    await page.mouse.move(box["x"] + box["width"] * 0.2, y)
    await page.mouse.down()
    await page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=5)
    await page.mouse.up()
    await expect(page).to_have_url(re.compile(r"from="))
    params = dict(url_params(page.url))
    start, end = (datetime.fromisoformat(params[k].replace("Z", "+00:00")) for k in ("from", "to"))
    assert timedelta(hours=1.5) < end - start < timedelta(hours=2.1)  # 30 % of 6 h
    assert "since" not in params
    # Back to the last 6 hours; a click on a bar holding entries narrows to that bar.
    await page.go_back()
    await expect(page.locator("#histogram-legend")).to_contain_text("30 in window")
    answer = await page.request.get(f"/api/v1/logs/histogram?q={word}&since=6h")
    hist = await answer.json()
    when = [datetime.fromisoformat(b["start"]) for b in hist["buckets"]]
    step = timedelta(seconds=hist["interval_s"])
    bar = max(range(len(when)), key=lambda i: hist["buckets"][i]["total"])
    share = (when[bar] + step / 2 - when[0]) / (when[-1] + step - when[0])
    await page.mouse.click(box["x"] + box["width"] * share, box["y"] + box["height"] - 3)
    await expect(page).to_have_url(re.compile(r"from="))
    params = dict(url_params(page.url))
    start, end = (datetime.fromisoformat(params[k].replace("Z", "+00:00")) for k in ("from", "to"))
    assert (start, end) == (when[bar], when[bar] + step)
    rows = page.locator("#results li[data-entry-id]")
    await expect(rows).to_have_count(hist["buckets"][bar]["total"])


async def test_live_tail_reconnects_and_resumes_after_the_last_event(
    explorer: Explorer, server: str
) -> None:
    word = token()
    await explorer.sign_in("admin")
    page = explorer.page
    await page.goto(f"/?q={word}&since=5m")
    await expect(page.locator("#results li.empty")).to_be_visible()
    resumed_from: list[str | None] = []
    key = await api_token(server, "admin")
    client = httpx.AsyncClient(base_url=server, headers={"Authorization": f"Bearer {key}"})

    async def tail(route: Route) -> None:
        if not resumed_from:
            # The first connection delivers a position, then drops (a restart, a proxy).
            resumed_from.append(None)
            missed = await client.post(
                "/api/v1/logs", json={"source": "app_errors", "message": f"{word} while away"}
            )
            resumed_from.append(str(missed.json()["id"]))
            await route.fulfill(
                status=200,
                headers={"Content-Type": "text/event-stream"},
                body="id: 1-0:0\nevent: position\ndata: \n\n",
            )
            return
        resumed_from.append(route.request.headers.get("last-event-id"))
        await route.continue_()

    await page.route("**/api/v1/tail?*", tail)
    try:
        await page.get_by_role("button", name="Live", exact=True).click()
        # The entry committed while the connection was down arrives after the reconnect.
        arrived = page.locator("#results li[data-entry-id]", has_text=f"{word} while away")
        await expect(arrived).to_have_count(1)
    finally:
        await client.aclose()
    assert await arrived.get_attribute("data-entry-id") == resumed_from[1]
    assert resumed_from[2] == "1-0:0"  # the reconnect asked to resume after that position
    await expect(page.locator("#live-status")).to_have_text("live")


async def test_saved_searches(explorer: Explorer, logs: LogRepository) -> None:
    word = token()
    ids = await write(logs, [{"message": f"{word} saved", "level": "ERROR"}])
    await explorer.sign_in("analyst")
    page = explorer.page
    await page.goto(f"/?q={word}&since=6h&level=ERROR")
    await explorer.wait_for_entry(ids[0])
    menu = page.locator("#saved-menu")
    await menu.locator("summary").click()
    await menu.get_by_label("Saved search name").fill("my errors")
    await menu.get_by_role("button", name="Save").click()
    await expect(menu.get_by_role("link", name="my errors")).to_be_visible()
    await page.goto("/?since=1h")
    await menu.locator("summary").click()
    await menu.get_by_role("link", name="my errors").click()
    await expect(page.locator("input[name=q]")).to_have_value(word)
    assert {("q", word), ("since", "6h"), ("level", "ERROR")} <= set(url_params(page.url))
    await explorer.wait_for_entry(ids[0])
    await menu.locator("summary").click()
    await menu.get_by_role("button", name="Delete saved search my errors").click()
    await expect(menu.get_by_role("link", name="my errors")).to_have_count(0)


async def test_admin_creates_an_api_key_shown_once(explorer: Explorer, server: str) -> None:
    await explorer.sign_in("admin")
    page = explorer.page
    await page.goto("/?view=admin&tab=keys")
    form = page.locator("form", has_text="New API key")
    await form.get_by_label("Name").fill("shipper-1")
    await form.get_by_role("button", name="Create key").click()
    secret = page.locator("#new-key")
    await expect(secret).to_have_text(re.compile(r"^lkk_"))
    key = await secret.inner_text()
    # The key works for ingest, and the list shows only its prefix from now on.
    async with httpx.AsyncClient(base_url=server) as client:
        sent = await client.post(
            "/api/v1/ingest",
            content='{"source": "app_errors", "message": "from the new key"}\n',
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"},
        )
    assert sent.status_code in (200, 202), sent.text
    await page.reload()
    await expect(page.locator("table.grid")).to_contain_text("shipper-1")
    assert key not in await page.content()
    assert key[:12] in await page.content()


async def test_admin_manages_alert_rules(explorer: Explorer) -> None:
    await explorer.sign_in("admin")
    page = explorer.page
    await page.goto("/?view=admin&tab=alerts")
    form = page.locator("form", has_text="New alert rule")
    await form.get_by_label("Name").fill("payments failing")
    await form.get_by_label("Source").select_option("app_errors")
    await form.get_by_label("Words").fill("declined")
    await form.get_by_label("Threshold").fill("5")
    await form.get_by_role("button", name="Create rule").click()
    row = page.locator("table.grid tr", has_text="payments failing")
    await expect(row).to_contain_text("app_errors")
    await expect(row).to_contain_text("5 in 300 s")
    await expect(row).to_contain_text("active")
    await row.get_by_role("button", name="Pause payments failing").click()
    await expect(row).to_contain_text("paused")
    rules = await (await page.request.get("/api/v1/alert-rules")).json()
    assert [(r["name"], r["is_active"]) for r in rules] == [("payments failing", False)]
    await row.get_by_role("button", name="Delete payments failing").click()
    await expect(row).to_have_count(0)


async def test_admin_grants_a_source_to_a_user(explorer: Explorer) -> None:
    await explorer.sign_in("admin")
    page = explorer.page
    await page.goto("/?view=admin&tab=users")
    row = page.locator("table.grid tr", has_text="viewer@")
    await row.get_by_role("button", name="Grants").click()
    # The fixture granted every source: take nginx_access away.
    box = page.get_by_role("checkbox", name="Grant nginx_access")
    await expect(box).to_be_checked()
    await box.uncheck()
    users = await (await page.request.get("/api/v1/users")).json()
    viewer = next(u for u in users if u["username"] == "viewer")
    for _ in range(50):
        grants = await (await page.request.get(f"/api/v1/users/{viewer['id']}/grants")).json()
        if 1 not in grants["sources"]:
            break
        await page.wait_for_timeout(100)
    assert grants["sources"] == [2, 3]
