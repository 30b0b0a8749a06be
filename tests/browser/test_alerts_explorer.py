"""The Alerts view in a real browser against a real logkeep: a threshold rule made from
a search in one click, its preview showing when it would have fired, then firing in the
alert list once the app's own evaluator has run it; a silence made from an alert and
listed; every kind through the editor, stored as the API takes it; the API's reasons
beside the fields they name; channels whose secrets are never shown again."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from playwright.async_api import Browser, Locator, Response, expect

from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.db.repositories import LogRepository
from tests.browser.alerts_support import api_as, create_rule, current_tick, entries_at, evaluate
from tests.browser.conftest import Explorer, Watch, open_explorer, token
from tests.conftest import served

pytestmark = pytest.mark.slow


@pytest.fixture
async def evaluating_server(secured: Settings) -> AsyncIterator[str]:
    """The app with its own alert evaluator running, as in production."""
    settings = secured.model_copy(update={"alerts_enabled": True, "alert_settle_s": 0.3})
    async with served(settings) as base_url:
        yield base_url


@pytest.fixture
async def evaluated(browser: Browser, evaluating_server: str) -> AsyncIterator[Explorer]:
    watch = Watch()
    opened = await open_explorer(browser, evaluating_server, watch)
    try:
        yield opened
    finally:
        await opened.context.close()
    assert watch.problems == []


def local_minute(iso: str) -> str:
    """How the page writes an instant, to the minute, in this machine's time zone."""
    return (
        datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone().strftime("%Y-%m-%d %H:%M")
    )


async def test_threshold_rule_from_a_search_previews_then_fires(
    evaluated: Explorer, logs: LogRepository, evaluating_server: str
) -> None:
    word = token()
    burst = datetime.now(UTC) - timedelta(hours=3)
    await entries_at(logs, burst, 12, f"{word} payment gateway timeout")
    await entries_at(logs, burst, 30, f"{word} payment retried", level="INFO")
    await entries_at(logs, datetime.now(UTC) - timedelta(seconds=20), 8, f"{word} payment down")
    await evaluated.sign_in("analyst")
    page = evaluated.page
    await page.goto(f"/?q={word}&since=6h&level=ERROR&source=app_errors")
    await expect(page.locator("#results li[data-entry-id]")).to_have_count(20)

    # One click from the search to a rule with the same filters.
    await page.get_by_role("link", name="Alert on this search").click()
    editor = page.locator("form.rule-editor")
    await expect(editor.locator("input[name=query]")).to_have_value(word)
    await expect(editor.get_by_role("checkbox", name="ERROR", exact=True)).to_be_checked()
    await expect(editor.get_by_role("checkbox", name="WARN", exact=True)).not_to_be_checked()
    await expect(editor.get_by_role("checkbox", name="app_errors")).to_be_checked()
    await expect(editor.get_by_role("checkbox", name="nginx_access")).not_to_be_checked()
    await editor.get_by_label("Name", exact=True).fill("payments down")
    await editor.get_by_label("Threshold", exact=True).fill("5")
    await editor.get_by_label("Window", exact=True).fill("5m")
    await editor.get_by_label("Every", exact=True).fill("5s")

    # The preview: when it would have fired over the last 24 hours.
    async with page.expect_response(re.compile(r"/api/v1/alert-rules/preview")) as answer:
        await editor.get_by_role("button", name="Preview").click()
    response: Response = await answer.value
    preview: dict[str, Any] = await response.json()
    firings = [n for n in preview["notifications"] if n["status"] == "firing"]
    assert len(firings) == 2, preview["notifications"]  # the burst, and now
    first = datetime.fromisoformat(firings[0]["at"].replace("Z", "+00:00"))
    assert burst < first <= burst + timedelta(seconds=10)
    pane = editor.locator(".preview-pane")
    await expect(pane.locator(".preview-headline")).to_have_text(
        re.compile(r"^Would have fired 2 times in the last 24 hours")
    )
    await expect(pane.locator("tr.would-notify.notify-firing").first).to_contain_text(
        local_minute(firings[0]["at"])
    )
    await expect(pane.locator("tr.would-notify.notify-resolved")).to_have_count(1)
    assert await pane.locator(".preview-chart canvas").count() >= 1

    await editor.get_by_role("button", name="Create rule").click()
    row = page.locator("#rule-list tr", has_text="payments down")
    await expect(row).to_have_class(re.compile("just-saved"))
    await expect(row).to_contain_text("≥ 5 in 5m")
    async with api_as(evaluating_server, "analyst") as api:
        stored = (await api.get("/api/v1/alert-rules")).json()
    assert len(stored) == 1
    rule = stored[0]
    assert (rule["query"], rule["level"], rule["min_level"], rule["sources"]) == (
        word, ["ERROR"], None, [2],
    )  # fmt: skip
    assert (rule["threshold"], rule["window_seconds"], rule["interval_seconds"]) == (5, 300, 5)

    # The app's evaluator runs it within an interval; the list refreshes by itself.
    await page.get_by_role("link", name="Alerts", exact=True).first.click()
    alert = page.locator(f'#alert-list tbody[data-rule-id="{rule["id"]}"] tr.alert-firing')
    await expect(alert).to_be_visible(timeout=30_000)
    await expect(alert).to_contain_text("8 (fires at ≥ 5)")
    search = alert.get_by_role("link", name=re.compile("^Search the matches"))
    params = dict(parse_qsl(urlsplit(await search.get_attribute("href") or "").query))
    assert (params["q"], params["level"], params["source"]) == (word, "ERROR", "app_errors")
    await search.click()
    await expect(page.locator("#results li[data-entry-id]")).to_have_count(8)
    await expect(page.locator("#results .msg").first).to_have_text(f"{word} payment down")


async def test_a_silence_made_from_an_alert_is_listed_and_mutes_it(
    explorer: Explorer, logs: LogRepository, db: Database, secured: Settings, server: str
) -> None:
    word = token()
    tick = current_tick()
    for host, count in (("web-1", 6), ("web-2", 1)):
        await entries_at(
            logs, tick - timedelta(seconds=40), count, f"{word} disk full",
            metadata={"host": host},
        )  # fmt: skip
    async with api_as(server, "admin") as api:
        rule = await create_rule(
            api, name="disks", query=word, sources=[2], threshold=3, window_seconds=300,
            interval_seconds=60, group_by="metadata.host", labels={"team": "storage"},
        )  # fmt: skip
    await evaluate(db, secured, [rule["id"]], tick)
    await explorer.sign_in("admin")
    page = explorer.page
    await page.goto("/?view=alerts")
    firing = page.locator("#alert-list tr.alert-firing")
    await expect(firing).to_have_count(1)
    await expect(firing).to_contain_text("host = web-1")
    await expect(page.locator("#alert-list tr.alert-ok")).to_contain_text("host = web-2")

    await firing.get_by_role("link", name="Silence disks host = web-1").click()
    form = page.locator("form.silence-form")
    await expect(form.get_by_label("Rule")).to_have_value(str(rule["id"]))
    await expect(form.get_by_label("Group")).to_have_value('"web-1"')
    await form.get_by_label("Comment").fill("replacing the disk")
    await form.get_by_role("button", name="Create silence").click()
    listed = page.locator("#silence-list tr.silence")
    await expect(listed).to_have_count(1)
    await expect(listed).to_contain_text("rule disks · host = web-1")
    await expect(listed).to_contain_text("active")
    await expect(listed).to_contain_text("replacing the disk")
    async with api_as(server, "admin") as api:
        silences = (await api.get("/api/v1/silences")).json()
    assert [(s["rule_id"], s["group_key"], s["comment"]) for s in silences] == [
        (rule["id"], '"web-1"', "replacing the disk")
    ]
    # The alert keeps firing, and says what mutes it.
    await page.get_by_role("link", name="Alerts", exact=True).first.click()
    await expect(firing.locator(".state-silenced")).to_be_visible()
    await expect(page.locator("#alert-list tr.alert-ok .state-silenced")).to_have_count(0)
    # Filtered by state, from the address.
    await page.get_by_label("Show alerts in state").select_option("firing")
    await expect(page).to_have_url(re.compile(r"[?&]state=firing"))
    await expect(page.locator("#alert-list tr.alert")).to_have_count(1)
    await page.reload()
    await expect(page.locator("#alert-list tr.alert")).to_have_count(1)
    await expect(page.get_by_label("Show alerts in state")).to_have_value("firing")

    # A maintenance window by labels, then both deleted.
    await page.goto("/?view=alerts&tab=silences")
    form = page.locator("form.silence-form")
    await form.get_by_label("Rule").select_option("")
    await form.get_by_label("Labels match").fill("team=stor*")
    await form.get_by_label("Repeats", exact=True).select_option("daily")
    await form.get_by_role("button", name="Ends 1h after the start").click()
    await form.get_by_label("Comment").fill("nightly backup")
    await form.get_by_role("button", name="Create silence").click()
    await expect(listed).to_have_count(2)
    await expect(listed.filter(has_text="nightly backup")).to_contain_text("labels team=stor*")
    await expect(listed.filter(has_text="nightly backup")).to_contain_text("daily")
    for left in (1, 0):
        remove = listed.first.get_by_role("button", name=re.compile("^Delete silence"))
        await remove.click()
        await expect(remove).to_have_text("Click again to delete")
        await remove.click()
        await expect(listed).to_have_count(left)
    await expect(page.locator("#silence-list")).to_have_text("No silences.")


async def test_every_kind_through_the_editor(explorer: Explorer, server: str) -> None:
    await explorer.sign_in("admin")
    page = explorer.page
    editor = page.locator("form.rule-editor")

    async def new_rule(name: str, kind: str) -> None:
        await page.goto("/?view=alerts&tab=edit")
        await editor.get_by_label("Name", exact=True).fill(name)
        await editor.get_by_role("radio", name=re.compile(f"^{kind}")).check()
        await editor.get_by_role("checkbox", name="app_errors").check()

    await new_rule("error rate", "Ratio")
    await editor.get_by_label("Threshold", exact=True).fill("12.5")
    await editor.get_by_label("Over the matches of").fill("checkout metadata.env=prod")
    await editor.get_by_label("At least this many below the line").fill("40")
    await editor.get_by_label("Group by").fill("source")
    await editor.get_by_role("button", name="Create rule").click()
    await expect(page.locator("#rule-list")).to_contain_text("error rate")

    await new_rule("hosts quiet", "Absence")
    await editor.get_by_role("checkbox", name="DEBUG", exact=True).check()
    await editor.get_by_role("checkbox", name="INFO", exact=True).check()
    await editor.get_by_role("checkbox", name="WARN", exact=True).check()
    await editor.get_by_label("Threshold", exact=True).fill("2")
    await editor.get_by_label("Group by").fill("metadata.host")
    await editor.get_by_label("Declared groups").fill("web-1\nweb-2\n")
    await editor.get_by_label("Also groups seen within").fill("1d")
    await editor.get_by_label("For", exact=True).fill("2m")
    await editor.get_by_label("Keep firing for").fill("10m")
    await editor.get_by_role("button", name="Create rule").click()
    await expect(page.locator("#rule-list")).to_contain_text("hosts quiet")

    await new_rule("new shapes", "New pattern")
    await editor.get_by_label("Learning period").fill("3d")
    await editor.get_by_label("Window", exact=True).fill("10m")
    await editor.get_by_label("Labels").fill("team=core\nsev=2")
    await editor.get_by_role("button", name="Create rule").click()
    await expect(page.locator("#rule-list")).to_contain_text("new shapes")

    rules = {r["name"]: r for r in await (await page.request.get("/api/v1/alert-rules")).json()}
    ratio = rules["error rate"]
    assert (ratio["kind"], ratio["threshold"], ratio["min_volume"], ratio["group_by"]) == (
        "ratio", 0.125, 40, "source",
    )  # fmt: skip
    assert ratio["denominator"]["query"] == "checkout"
    assert ratio["denominator"]["metadata"] == {"env": "prod"}
    absence = rules["hosts quiet"]
    assert (absence["kind"], absence["threshold"], absence["min_level"]) == ("absence", 2, "DEBUG")
    assert absence["expected_groups"] == ["web-1", "web-2"]
    assert (absence["seen_lookback_seconds"], absence["for_seconds"]) == (86_400, 120)
    assert absence["keep_firing_for_seconds"] == 600
    shapes = rules["new shapes"]
    assert (shapes["kind"], shapes["learning_seconds"], shapes["window_seconds"]) == (
        "new_pattern", 3 * 86_400, 600,
    )  # fmt: skip
    assert shapes["labels"] == {"team": "core", "sev": "2"}

    # Opened again and saved unchanged, a rule stays as it was.
    for name in rules:
        await page.goto(f"/?view=alerts&tab=edit&rule={rules[name]['id']}")
        await expect(editor.get_by_label("Name", exact=True)).to_have_value(name)
        await editor.get_by_role("button", name="Save changes").click()
        await expect(page.locator("#rule-list tr.just-saved")).to_contain_text(name)
    again = {r["name"]: r for r in await (await page.request.get("/api/v1/alert-rules")).json()}
    for name, rule in rules.items():
        assert {k: v for k, v in again[name].items() if k != "updated_at"} == {
            k: v for k, v in rule.items() if k != "updated_at"
        }


async def test_the_api_reasons_show_beside_their_fields(explorer: Explorer) -> None:
    await explorer.sign_in("admin")
    page = explorer.page
    await page.goto("/?view=alerts&tab=edit")
    editor = page.locator("form.rule-editor")

    def field(name: str) -> Locator:
        return editor.locator(f'.field[data-field="{name}"] .field-error')

    await editor.get_by_label("Name", exact=True).fill("bad one")
    await editor.get_by_role("checkbox", name="every source").check()
    # Read in the browser: a duration it cannot read.
    await editor.get_by_label("Window", exact=True).fill("ten minutes")
    await editor.get_by_role("button", name="Preview").click()
    await expect(field("window_seconds")).to_contain_text('"ten minutes" is not a duration')
    await expect(editor.get_by_label("Window", exact=True)).to_have_attribute(
        "aria-invalid", "true"
    )
    # Refused by the API, each beside its field.
    explorer.watch.allowed = ("Failed to load resource",)
    await editor.get_by_label("Window", exact=True).fill("5m")
    await editor.get_by_label("Words and metadata terms").fill("!!!")
    await editor.get_by_role("button", name="Preview").click()
    await expect(field("query")).to_contain_text("has no words")
    await expect(field("window_seconds")).to_be_hidden()
    await editor.get_by_label("Words and metadata terms").fill("payment")
    await editor.get_by_label("Group by").fill("host")
    await editor.get_by_label("Every", exact=True).fill("2s")
    await editor.get_by_role("button", name="Create rule").click()
    await expect(field("interval_seconds")).to_contain_text("greater than or equal to 5")
    await expect(field("query")).to_be_hidden()
    await editor.get_by_label("Every", exact=True).fill("1m")
    await editor.get_by_role("button", name="Create rule").click()
    await expect(field("group_by")).to_contain_text("is `source` or `metadata.<key>`")
    await expect(field("interval_seconds")).to_be_hidden()
    await editor.get_by_label("Group by").fill("metadata.host")
    await editor.get_by_role("button", name="Create rule").click()
    await expect(page.locator("#rule-list")).to_contain_text("bad one")
    # A second rule of the same name: the API's reason, in words.
    await page.goto("/?view=alerts&tab=edit")
    await editor.get_by_label("Name", exact=True).fill("bad one")
    await editor.get_by_role("checkbox", name="app_errors").check()
    await editor.get_by_role("button", name="Create rule").click()
    await expect(editor.locator(".save-box .error")).to_have_text(
        "an alert rule named 'bad one' exists"
    )


async def test_channels_keep_their_secrets(explorer: Explorer, server: str) -> None:
    secret = "s3cret-" + token() + "-signing"
    chat = "https://hooks.slack.example/services/T000/B000/" + token()
    await explorer.sign_in("admin")
    page = explorer.page
    await page.goto("/?view=alerts&tab=channels")
    form = page.locator("form.channel-form")
    await form.get_by_label("Name", exact=True).fill("receiver")
    await form.get_by_label("URL").fill("https://hooks.example.test/logkeep")
    await form.get_by_label("Signing secret").fill("short")
    explorer.watch.allowed = ("Failed to load resource",)
    await form.get_by_role("button", name="Create channel").click()
    await expect(form.locator('.field[data-field="secret"] .field-error')).to_contain_text(
        "16"
    )  # "... a secret of 16+ characters", or at least 16 characters, beside the field
    await form.get_by_label("Signing secret").fill(secret)
    await form.get_by_role("button", name="Create channel").click()
    await expect(page.locator("#channel-list")).to_contain_text("receiver")
    await form.get_by_label("Name", exact=True).fill("chat")
    await form.get_by_label("Kind").select_option("slack")
    await expect(form.get_by_label("Signing secret")).to_be_hidden()
    await form.get_by_label("URL").fill(chat)
    await form.get_by_role("button", name="Create channel").click()
    await expect(page.locator("#channel-list")).to_contain_text("slack")
    await form.get_by_label("Name", exact=True).fill("mail")
    await form.get_by_label("Kind").select_option("email")
    await form.get_by_label("To", exact=True).fill("oncall@example.com, ops@example.com")
    await form.get_by_role("button", name="Create channel").click()
    rows = page.locator("#channel-list tbody tr")
    await expect(rows).to_have_count(3)
    mail = rows.filter(has_text="mail")
    await expect(mail).to_contain_text("oncall@example.com, ops@example.com")
    await expect(rows.filter(has_text="receiver")).to_contain_text("signed")
    await expect(rows.filter(has_text="chat")).to_contain_text("https://hooks.slack.example/…")
    await page.reload()
    await expect(rows).to_have_count(3)
    html = await page.content()
    assert secret not in html and chat not in html
    assert await page.locator("form.channel-form input[name=secret]").input_value() == ""
    # The editor offers them to rules.
    await page.goto("/?view=alerts&tab=edit")
    channels = page.locator('.field[data-field="channels"] label')
    await expect(channels).to_have_text(["chat (slack)", "mail (email)", "receiver (webhook)"])
    # Deleted with a second click.
    await page.goto("/?view=alerts&tab=channels")
    remove = page.get_by_role("button", name="Delete channel chat")
    await remove.click()
    await expect(remove).to_have_text("Click again to delete")
    await remove.click()
    await expect(rows).to_have_count(2)
