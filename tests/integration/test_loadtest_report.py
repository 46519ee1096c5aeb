"""`image-service loadtest --report FILE.html`: a self-contained page (no script, nothing
fetched) with throughput and latency over time and percentiles per step, opened in headless
Chromium as the service's own page is tested. Its screenshot goes to test-artifacts/."""

from __future__ import annotations

import json
from pathlib import Path

from playwright.async_api import Browser

from tests.integration.conftest import Api
from tests.processes import run_command

STEPS = ("upload_url", "put_to_s3", "complete", "processed", "list", "download", "delete")


async def test_the_report_shows_the_run_over_time_and_per_step(
    api: Api, browser: Browser, artifacts: Path, tmp_path: Path
) -> None:
    report = tmp_path / "report.html"
    status, out, err = await run_command(
        *("loadtest", "--url", api.url, "--users", "2", "--count", "6", "--json"),
        *("--report", str(report)),
        env=api.child_environment(),
        within=120,
    )
    assert status == 0, err
    summary = json.loads(out)
    assert summary["lifecycles"] == 6

    page = await browser.new_page()
    fetched: list[str] = []
    page.on("request", lambda request: fetched.append(request.url))
    await page.goto(report.as_uri())
    assert fetched == [report.as_uri()], "the report fetches nothing"
    assert "6 lifecycles" in await page.inner_text("#summary")
    assert await page.locator("svg").count() == 2
    series = await page.locator("polyline").evaluate_all(
        "lines => lines.map(line => line.dataset.series)"
    )
    assert series == ["lifecycles/s", *STEPS]
    rows = await page.locator("#steps tr").all_inner_texts()
    assert [row.split("\t")[0] for row in rows[1:]] == list(STEPS)
    assert await page.inner_text("#errors") == "none"
    await page.screenshot(path=str(artifacts / "loadtest-report.png"), full_page=True)
