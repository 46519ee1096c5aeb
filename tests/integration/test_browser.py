"""The page at `/`, driven end to end in headless Chromium (Debian's, through Playwright's
driver; no browser is downloaded) against a real `image-service dev` process: mint a token,
upload files straight to S3 with progress, see the gallery, delete. A screenshot of the gallery
is saved under test-artifacts/ for a person to look at."""

from __future__ import annotations

import asyncio
import io
import re
from pathlib import Path

from PIL import Image
from playwright.async_api import Browser, Page, Route, expect

from image_service.client import ImageServiceClient
from tests import images
from tests.integration.conftest import Api

WAIT_MS = 30_000


def _picture(fmt: str, colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (320, 200), colour).save(buffer, fmt)
    return buffer.getvalue()


async def _signed_in_page(browser: Browser, url: str, problems: list[str]) -> Page:
    page = await browser.new_page(viewport={"width": 1200, "height": 900})
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    await page.goto(url)
    await page.click("#mint-token")
    await expect(page.locator("body")).to_have_attribute("data-signed-in", "true")
    return page


async def test_upload_see_and_delete_from_the_browser(
    browser: Browser, dev_url: str, tmp_path: Path, artifacts: Path
) -> None:
    files = {
        "red.jpg": _picture("JPEG", (200, 30, 30)),
        "blue.png": _picture("PNG", (30, 30, 200)),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    problems: list[str] = []
    page = await _signed_in_page(browser, dev_url, problems)

    await page.fill("#tags", "e2e, beach")
    await page.fill("#description", "from the browser")
    await page.set_input_files("#files", [str(tmp_path / name) for name in files])

    uploads = page.locator("#uploads li")
    await expect(page.locator("#uploads li[data-status=ready]")).to_have_count(2, timeout=WAIT_MS)
    for row in range(2):  # each bar went all the way
        assert await uploads.nth(row).locator("progress").evaluate("bar => bar.value") == 1
    cards = page.locator("#gallery li.card")
    await expect(cards).to_have_count(2, timeout=WAIT_MS)
    thumbnails = page.locator("#gallery img")
    await expect(thumbnails).to_have_count(2, timeout=WAIT_MS)
    for index in range(2):
        await expect(thumbnails.nth(index)).to_have_js_property("complete", True)
        # Renditions: two sizes for the browser to choose from, by signed URLs on the API; at
        # this page's one pixel per CSS pixel it took the 256 px one for its 160 px slot.
        srcset = await thumbnails.nth(index).get_attribute("srcset") or ""
        assert srcset.count("/r/") == 2, srcset
        assert srcset.endswith(" 512w")
        chosen = await thumbnails.nth(index).evaluate("img => img.currentSrc")
        assert "/w256-h256-cover-auto-q0-gauto/" in chosen
        assert await thumbnails.nth(index).evaluate("img => img.naturalWidth") == 160
        # The ThumbHash was drawn behind it while it loaded.
        frame = cards.nth(index).locator(".thumb")
        assert await frame.get_attribute("data-thumbhash") == "shown"
        assert "data:image/png" in await frame.evaluate("f => f.style.backgroundImage")
    await expect(cards.first.locator(".tags span")).to_have_text(["e2e", "beach"])
    await page.screenshot(path=str(artifacts / "browser-gallery.png"), full_page=True)

    # An album of what is shown, shared, its link copied and opened with no account.
    await page.fill("#album-name", "Trip")
    await page.click("#make-album")
    album = page.locator("#albums li")
    await expect(album).to_have_count(1, timeout=WAIT_MS)
    await album.locator("button.share").click()
    await expect(album).to_have_attribute("data-shared", "true", timeout=WAIT_MS)
    link = await album.locator("input.share-link").input_value()
    assert "/s/" in link
    recipient = await browser.new_page()
    await recipient.goto(link)
    await expect(recipient.locator("#gallery li.card")).to_have_count(2, timeout=WAIT_MS)
    await recipient.close()

    # An import the service refuses (a private address) says why, in its row.
    await page.fill("#import-url", "http://127.0.0.1:9/photo.jpg")
    await page.click("#import")
    refused = page.locator("#uploads li[data-status=failed]")
    await expect(refused).to_have_count(1, timeout=WAIT_MS)
    await expect(refused).to_contain_text("import_refused")
    expected = "the server responded with a status of 422"
    assert [p for p in problems if expected in p], problems  # the browser's own note of it
    problems[:] = [p for p in problems if expected not in p]

    removed = await cards.first.get_attribute("data-image-id")
    await cards.first.locator("button.delete").click()
    await expect(cards).to_have_count(1)
    assert problems == []

    # What the page did is what the service holds: the other image, whole, with its details.
    token = await page.input_value("#token")
    async with ImageServiceClient(dev_url, token) as client:
        listed = (await client.list()).items
        assert [image.image_id for image in listed] != [removed]
        assert len(listed) == 1
        kept = listed[0]
        assert (kept.status, kept.tags, kept.description) == (
            "ready",
            ("e2e", "beach"),
            "from the browser",
        )
        assert kept.filename is not None
        assert await client.download(kept.image_id) == files[kept.filename]

        # Another client moves its focal point: its rendition URLs change (a new edition), and
        # the page, told by its event stream, shows the new ones.
        thumbnail = page.locator(f"#gallery li[data-image-id='{kept.image_id}'] img")
        await asyncio.sleep(2)  # the refresh the delete's own event asked for has been
        assert "-gauto/" in await thumbnail.evaluate("img => img.currentSrc")
        await client.update(kept.image_id, focal=(0.2, 0.8))
        await expect(thumbnail).to_have_attribute("src", re.compile("-gfocal/"), timeout=WAIT_MS)
        await expect(thumbnail).to_have_js_property("complete", True)
        assert await thumbnail.evaluate("img => img.naturalWidth") > 0
    assert problems == []


async def test_a_file_that_is_not_what_it_claims_is_refused_with_the_reason(
    browser: Browser, dev_url: str, tmp_path: Path
) -> None:
    disguised = tmp_path / "holiday.jpg"
    disguised.write_bytes(images.HTML)
    problems: list[str] = []
    page = await _signed_in_page(browser, dev_url, problems)

    await page.set_input_files("#files", str(disguised))

    row = page.locator("#uploads li[data-file='holiday.jpg']")
    await expect(row).to_have_attribute("data-status", "failed", timeout=WAIT_MS)
    await expect(row).to_contain_text("content_mismatch")
    # Listed as rejected (until its record expires), with no picture to show.
    card = page.locator("#gallery li.card")
    await expect(card).to_have_attribute("data-status", "rejected")
    await expect(card.locator("img")).to_have_count(0)
    assert all("status of 422" in problem for problem in problems)  # only the refusal


async def test_a_large_file_goes_up_in_parts_and_resumes_after_a_reload(
    browser: Browser, dev_url: str, tmp_path: Path
) -> None:
    large = tmp_path / "panorama.png"
    data = images.noisy_png(2400, 2400)  # 17 MB: over the page's 16 MiB threshold, 3 parts
    large.write_bytes(data)
    problems: list[str] = []
    page = await _signed_in_page(browser, dev_url, problems)
    token = await page.input_value("#token")

    # The connection dies after the first part: S3 never answers the others.
    held: list[Route] = []

    async def first_part_only(route: Route) -> None:
        if "partNumber=1&" in route.request.url or route.request.url.endswith("partNumber=1"):
            await route.continue_()
        else:
            held.append(route)

    await page.route("**/*partNumber=*", first_part_only)
    await page.set_input_files("#files", str(large))
    row = page.locator("#uploads li[data-file='panorama.png']")
    await expect(row).to_have_attribute("data-image-id", re.compile(".+"), timeout=WAIT_MS)
    image_id = await row.get_attribute("data-image-id")
    assert image_id is not None
    async with ImageServiceClient(dev_url, token) as client:
        async with asyncio.timeout(WAIT_MS / 1000):
            # S3 holding a part is no event to await: asked until it does.
            while (await client.parts(image_id)).uploaded_bytes == 0:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        for route in held:
            await route.abort()
        await page.unroute("**/*partNumber=*")

        await page.reload()  # the tab crashed, or the user closed it
        await expect(page.locator("body")).to_have_attribute("data-signed-in", "true")
        await page.set_input_files("#files", str(large))  # the same file, chosen again
        row = page.locator("#uploads li[data-file='panorama.png']")
        await expect(row).to_have_attribute("data-status", "ready", timeout=WAIT_MS)
        assert await row.get_attribute("data-resumed") == image_id
        assert await row.locator("progress").evaluate("bar => bar.value") == 1
        assert [image.image_id for image in (await client.list()).items] == [image_id]
        assert await client.download(image_id) == data
    # Only the parts the dead connection dropped.
    assert problems
    assert all("net::ERR_FAILED" in problem for problem in problems), problems


async def test_the_docs_page_renders_every_operation_under_its_content_security_policy(
    browser: Browser, api: Api
) -> None:
    """The policy forbids inline script but the page's own start-up script (by hash): Swagger
    UI must still start, list every operation, and break no rule of the policy."""
    page = await browser.new_page()
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text))
    await page.goto(f"{api.url}/docs")
    await expect(page.locator(".opblock")).to_have_count(37, timeout=15_000)
    assert not [text for text in violations if "Content Security Policy" in text], violations
    await page.close()


async def test_a_recipient_with_no_account_sees_a_shared_album_until_it_is_revoked(
    browser: Browser, api: Api, artifacts: Path
) -> None:
    shared = []
    for colour in ((200, 60, 40), (40, 120, 200), (60, 180, 90)):
        upload, status, _ = await api.upload(_picture("JPEG", colour))
        assert status == 200
        shared.append(upload["image_id"])
    _, album, _ = await api.call("POST", "/albums", json={"name": "Seaside"})
    await api.call("PUT", f"/albums/{album['album_id']}/images", json={"image_ids": shared})
    _, share, _ = await api.call("POST", "/shares", json={"album_id": album["album_id"]})

    problems: list[str] = []
    page = await browser.new_page(viewport={"width": 1000, "height": 700})
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    await page.goto(share["url"])
    await expect(page.locator("body")).to_have_attribute("data-state", "shown", timeout=WAIT_MS)
    cards = page.locator("#gallery li.card")
    await expect(cards).to_have_count(3)
    pictures = page.locator("#gallery img")
    # Every rendition shown, the first renders of which may have been refused for a moment
    # (renders are bounded per user: 503, which the page retries).
    await page.wait_for_function(
        "() => [...document.querySelectorAll('#gallery img')]"
        ".every(img => img.complete && img.naturalWidth > 0)",
        timeout=WAIT_MS,
    )
    for index in range(3):
        assert "/s/r/" in (await pictures.nth(index).get_attribute("src") or "")
    assert await page.locator("#gallery a[download]").count() == 0  # renditions only
    await page.screenshot(path=str(artifacts / "share-gallery.png"), full_page=True)

    # Revoked while the recipient holds the page: its renditions stop, and so does the page.
    assert (await api.call("DELETE", f"/shares/{share['share_id']}"))[0] == 204
    source = await pictures.first.get_attribute("src")
    status = await page.evaluate("url => fetch(url).then(r => r.status)", source)
    assert status == 410
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-state", "gone", timeout=WAIT_MS)
    await expect(page.locator("#message")).to_have_text("This link has ended.")
    assert problems == []
