"""Uppy, the upload widget front ends already use, driving the multipart protocol: the example
page in examples/uppy (Uppy vendored from the npm registry by `make`) on an origin of its own,
in headless Chromium, against `image-service dev`, with a file large enough for three parts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Browser, expect

from image_service.client import ImageServiceClient
from image_service.programs.embedded import free_port
from tests import images

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "uppy"
WAIT_MS = 60_000


@pytest.fixture
async def example_url() -> AsyncIterator[str]:
    """The example page on a static server of its own: another origin than the API's."""
    if not (EXAMPLE / "vendor" / "uppy.min.mjs").exists():
        raise RuntimeError("Uppy is not vendored: `make test` fetches it from the npm registry")
    app = web.Application()
    app.router.add_static("/", EXAMPLE)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_uppy_uploads_a_large_image_in_parts(
    browser: Browser, dev_url: str, example_url: str, tmp_path: Path
) -> None:
    large = tmp_path / "scan.png"
    data = images.noisy_png(2400, 2400)  # 17 MB: three 8 MiB parts
    large.write_bytes(data)
    async with aiohttp.ClientSession() as http, http.post(f"{dev_url}/dev/token") as response:
        token = (await response.json())["token"]
    page = await browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    parts: list[str] = []
    page.on("request", lambda r: parts.append(r.url) if "partNumber=" in r.url else None)

    await page.goto(f"{example_url}/index.html#api={dev_url}&token={token}")
    await page.locator("input.uppy-Dashboard-input").first.set_input_files(str(large))
    await page.locator("button.uppy-StatusBar-actionBtn--upload").click()

    result = page.locator("#results li")
    await expect(result).to_have_attribute("data-status", "ready", timeout=WAIT_MS)
    image_id = await result.get_attribute("data-image-id")
    assert image_id is not None
    assert sorted(url.split("partNumber=")[1].split("&")[0] for url in parts) == ["1", "2", "3"]
    assert problems == []
    async with ImageServiceClient(dev_url, token) as client:
        image = await client.get(image_id)
        assert (image.status, image.size, image.filename) == ("ready", len(data), "scan.png")
        assert await client.download(image_id) == data
