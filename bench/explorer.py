"""The web explorer in Debian's chromium over the query benchmark's data set: what a cold
load transfers, and the time from pressing Enter to the first results painted.

    .venv/bin/python bench/explorer.py --rows 1000000 --runs 15

Loads ROWS entries over 7 days as `logkeep bench query` does (closed slices compacted,
the last 15 minutes in the hot tier), into throwaway servers;
serves the API; then, in a fresh browser profile, loads the page (sizes from the
browser's Resource Timing: bytes on the wire, compressed) and runs each search RUNS times
by typing it and pressing Enter. The page records the time from the search to the frame
after the results were drawn. Before each cold run the sources' cache generations are
bumped (as a write would), so PostgreSQL answers every run, not the query cache.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import httpx
from playwright.async_api import Page, async_playwright

from logkeep.api.app import create_app
from logkeep.api.local import serve_locally
from logkeep.bench.query import load_as_live
from logkeep.cli.common import stores
from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.embedded import temporary_root
from logkeep.logging import configure_logging

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

SEARCHES = [
    # name, text typed in the query box, time range
    ("newest entries (24 h, no filter)", "", "24h"),
    ("word over 24 h (q=declined)", "declined", "24h"),
    ("metadata filter (metadata.status=503, 24 h)", "metadata.status=503", "24h"),
]

RESOURCES = """() => {
    const nav = performance.getEntriesByType('navigation')[0];
    const all = [nav, ...performance.getEntriesByType('resource')];
    return all.map(e => ({name: e.name, transfer: e.transferSize, encoded: e.encodedBodySize,
                          decoded: e.decodedBodySize}));
}"""


async def search_once(page: Page, text: str) -> float:
    before = await page.evaluate("document.body.dataset.searchGeneration || '0'")
    box = page.locator("input[name=q]")
    await box.fill(text)
    await box.press("Enter")
    await until(
        page,
        f"document.body.dataset.searchGeneration !== {before!r}"
        " && document.body.dataset.searchDone === document.body.dataset.searchGeneration",
    )
    return float(await page.evaluate("document.body.dataset.searchMs"))


LAST_PAGE_FETCH = """() => {
    const e = performance.getEntriesByType('resource')
        .filter(r => /\\/api\\/v1\\/logs\\?/.test(r.name)).pop();
    performance.clearResourceTimings();
    const server = (e.serverTiming || []).map(t => t.duration).reduce((a, b) => a + b, 0);
    return [e.duration, server];
}"""


async def until(page: Page, condition: str, timeout_s: float = 60) -> None:
    """Poll `condition` in the page (wait_for_function would need eval, which the page's
    CSP refuses). The time measured is the page's own, so polling costs it nothing."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await page.evaluate(condition):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(condition)
        await asyncio.sleep(0.01)


async def measure(settings: Settings, rows: int, runs: int) -> None:
    async with Database(settings) as db:
        await load_as_live(db, settings, rows)
        source_ids = [r["id"] for r in await db.pool.fetch("SELECT id FROM log_sources")]

        async def bust() -> None:
            await db.cache.invalidate_sources(source_ids)

        async with serve_locally(create_app(settings)) as base, async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
            )
            context = await browser.new_context(viewport={"width": 1400, "height": 900})
            page = await context.new_page()
            await page.goto(base + "/")
            await until(page, "document.body.dataset.searchDone !== undefined")
            entries: list[dict[str, Any]] = await page.evaluate(RESOURCES)
            assets = [e for e in entries if "/api/" not in e["name"]]
            transferred = sum(e["transfer"] for e in assets)
            decoded = sum(e["decoded"] for e in assets)
            print(
                f"cold load: {len(assets)} files, {transferred / 1024:.1f} KB transferred "
                f"(gzip, with headers), {decoded / 1024:.1f} KB uncompressed"
            )
            for name, text, since in SEARCHES:
                await page.goto(f"{base}/?since={since}")
                await until(page, "document.body.dataset.searchDone !== undefined")
                drawn, fetched, served = [], [], []
                for _ in range(runs):
                    await bust()
                    drawn.append(await search_once(page, text))
                    fetch_ms, server_ms = await page.evaluate(LAST_PAGE_FETCH)
                    fetched.append(fetch_ms)
                    served.append(server_ms)
                baseline = []
                params = {"since": since, "limit": "100"}
                if text.startswith("metadata."):
                    key, _, value = text.partition("=")
                    params[key] = value
                elif text:
                    params["q"] = text
                async with httpx.AsyncClient(base_url=base, timeout=60) as client:
                    for _ in range(runs):
                        await bust()
                        started = time.perf_counter()
                        (await client.get("/api/v1/logs", params=params)).raise_for_status()
                        baseline.append((time.perf_counter() - started) * 1000)
                print(
                    f"{name:46} the same page request alone (httpx, no browser): p50 "
                    f"{statistics.median(baseline):6.1f} ms"
                )
                print(
                    f"{name:46} Enter→results drawn p50 {statistics.median(drawn):6.1f} ms "
                    f"(max {max(drawn):.0f}); its page request p50 "
                    f"{statistics.median(fetched):6.1f} ms, of which server "
                    f"{statistics.median(served):6.1f} ms"
                )
            await browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    configure_logging("warning")  # a log line per request would be measured too
    with temporary_root("lk-bench-") as root:
        settings = Settings(
            _env_file=None,
            env="dev",
            data_dir=root,
            maintenance_interval_s=0,
            seed_rows=0,
        )
        with stores(settings) as (resolved, _):
            asyncio.run(measure(resolved, args.rows, args.runs))


if __name__ == "__main__":
    main()
