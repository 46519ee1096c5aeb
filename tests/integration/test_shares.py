"""Share links, through HTTP against moto, opened with no account: what they show (and never),
their renditions and originals, their ends (expiry, revocation, views), their passwords and
the limit on guessing them, and the images that leave them when trashed."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest

from image_service.programs.embedded import free_port
from tests import images
from tests.integration.conftest import Api, MakeApi
from tests.integration.receivers import SECRET, Receiver
from tests.processes import Program, wait_for_port


async def _share(api: Api, user: str = "alice", **body: Any) -> dict[str, Any]:
    status, share, headers = await api.call("POST", "/shares", user=user, json=body)
    assert status == 201, share
    assert headers["Cache-Control"] == "no-store"
    return share  # type: ignore[no-any-return]


async def _open(
    api: Api, url: str, *, password: str | None = None, **params: str
) -> tuple[int, Any, Any]:
    """GET the link as anyone would: no token, JSON."""
    headers = {"Accept": "application/json"}
    if password is not None:
        headers["Share-Password"] = password
    async with api.http.get(url, headers=headers, params=params) as response:
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, body, response.headers


async def test_a_link_shows_its_images_renditions_and_nothing_else(api: Api) -> None:
    shared = await api.ready_images(2)
    await api.ready_images(1)  # not in the link
    share = await _share(api, image_ids=shared)
    assert share["url"].startswith(api.url + "/s/")
    status, body, headers = await _open(api, share["url"])
    assert status == 200, body
    assert headers["Cache-Control"] == "no-store"
    assert [image["image_id"] for image in body["images"]] == shared
    image = body["images"][0]
    presets = {preset.split("=")[0] for preset in api.settings.render_presets}
    assert set(image["renditions"]) == presets
    assert image["download"] is None
    text = json.dumps(body)
    for secret in ("alice", "images/", "original", "gps", "s3_key", "incoming/"):
        assert secret not in text, secret
    async with api.http.get(image["renditions"]["card"]) as rendition:
        assert rendition.status == 200
        assert rendition.content_type.startswith("image/")
        assert rendition.headers["Cache-Control"] == "private, no-cache"

    status, listed, _ = await api.call("GET", "/shares")
    (entry,) = listed["items"]
    assert (entry["share_id"], entry["views"]) == (share["share_id"], 1)
    assert "url" not in entry


async def test_a_link_that_allows_downloads_serves_the_originals(api: Api) -> None:
    data = images.jpeg(320, 200)
    upload, _, _ = await api.upload(data)
    share = await _share(api, image_ids=[upload["image_id"]], allow_download=True)
    _, body, _ = await _open(api, share["url"])
    download = body["images"][0]["download"]
    assert "alice" not in download
    async with api.http.get(download) as original:
        assert original.status == 200
        assert await original.read() == data
        assert original.headers["Content-Disposition"].startswith("attachment")
    tampered = download.replace("/s/o/", "/s/r/")
    async with api.http.get(tampered) as refused:
        assert refused.status in {403, 404}


async def test_a_trashed_image_leaves_every_link_at_once_and_comes_back_restored(
    api: Api,
) -> None:
    kept, trashed = await api.ready_images(2, tags=["trip"])
    _, album, _ = await api.call("POST", "/albums", json={"name": "Trip"})
    await api.call(
        "PUT", f"/albums/{album['album_id']}/images", json={"image_ids": [kept, trashed]}
    )
    links = [
        await _share(api, image_ids=[kept, trashed]),
        await _share(api, album_id=album["album_id"]),
        await _share(api, tag="Trip"),
    ]
    _, body, _ = await _open(api, links[0]["url"])
    rendition = body["images"][1]["renditions"]["card"]
    assert (await api.call("DELETE", f"/images/{trashed}"))[0] == 204
    for link in links:
        _, body, _ = await _open(api, link["url"])
        assert [image["image_id"] for image in body["images"]] == [kept], link
    async with api.http.get(rendition) as refused:
        assert refused.status == 404
    assert (await api.call("POST", f"/images/{trashed}/restore"))[0] == 200
    for link in links:
        _, body, _ = await _open(api, link["url"])
        assert {image["image_id"] for image in body["images"]} == {kept, trashed}, link


async def test_a_link_ends_when_it_expires_or_is_revoked_and_unknown_ones_are_404(
    api: Api,
) -> None:
    (image_id,) = await api.ready_images()
    expiring = await _share(api, image_ids=[image_id], ttl=3600)
    revoked = await _share(api, image_ids=[image_id])
    _, body, _ = await _open(api, revoked["url"])
    rendition = body["images"][0]["renditions"]["card"]
    assert (await api.call("DELETE", f"/shares/{revoked['share_id']}"))[0] == 204
    status, body, _ = await _open(api, revoked["url"])
    assert (status, body["error"]["code"]) == (410, "share_revoked")
    async with api.http.get(rendition) as refused:
        assert refused.status == 410
    assert (await api.call("DELETE", f"/shares/{revoked['share_id']}"))[0] == 404

    api.clock.pinned = api.clock() + timedelta(hours=2)
    status, body, _ = await _open(api, expiring["url"])
    assert (status, body["error"]["code"]) == (410, "share_expired")
    api.clock.pinned = None

    token = expiring["url"].rsplit("/", 1)[1]
    for wrong in (
        token[:-1] + ("A" if token[-1] != "A" else "B"),  # its secret, changed
        "0123456789abcdef_" + "A" * 22,
        "nothing",
        token + "x",
    ):
        status, body, _ = await _open(api, f"{api.url}/s/{wrong}")
        assert (status, body["error"]["code"]) == (404, "share_not_found"), wrong


async def test_a_password_is_asked_and_guesses_are_limited(api: Api) -> None:
    (image_id,) = await api.ready_images()
    share = await _share(api, image_ids=[image_id], password="correct horse")
    status, body, _ = await _open(api, share["url"])
    assert (status, body["error"]["code"]) == (401, "password_required")
    status, body, _ = await _open(api, share["url"], password="correct horse")
    assert status == 200
    codes = []
    for _ in range(12):
        status, body, headers = await _open(api, share["url"], password="wrong guess")
        codes.append(body["error"]["code"])
        if status == 429:
            assert int(headers["Retry-After"]) >= 1
    assert codes[:9] == ["wrong_password"] * 9  # the right one took a token too
    assert "rate_limited" in codes


async def test_max_views_holds_across_two_api_processes_under_concurrent_viewers(
    api: Api,
) -> None:
    (image_id,) = await api.ready_images()
    share = await _share(api, image_ids=[image_id], max_views=5)
    token = share["url"].rsplit("/", 1)[1]
    servers = []
    try:
        for _ in range(2):
            port = free_port()
            program = await Program.start("serve", env=api.child_environment(PORT=str(port)))
            await wait_for_port(port, owner=program.process)
            servers.append((program, f"http://127.0.0.1:{port}"))

        async def view(n: int) -> int:
            url = f"{servers[n % 2][1]}/s/{token}"
            async with api.http.get(url, headers={"Accept": "application/json"}) as response:
                return response.status

        statuses = await asyncio.gather(*(view(n) for n in range(20)))
    finally:
        for program, _ in servers:
            await program.stop()
    assert sorted(statuses) == [200] * 5 + [410] * 15


async def test_the_page_for_a_browser_is_served_without_revealing_its_token_in_logs(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="image_service.access")
    (image_id,) = await api.ready_images()
    share = await _share(api, image_ids=[image_id])
    token = share["url"].rsplit("/", 1)[1]
    _, body, _ = await _open(api, share["url"])
    async with api.http.get(body["images"][0]["renditions"]["card"]) as rendition:
        assert rendition.status == 200
    async with api.http.get(share["url"], headers={"Accept": "text/html"}) as page:
        assert page.status == 200
        assert page.content_type == "text/html"
        assert page.headers["Referrer-Policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    async with api.http.get(
        f"{api.url}/s/0123456789abcdef_{'A' * 22}", headers={"Accept": "text/html"}
    ) as missing:
        assert missing.status == 404
    lines = [record.getMessage() for record in caplog.records]
    assert any("GET /s/{token} 200" in line for line in lines), lines
    secret = token.split("_", 1)[1]
    assert not [line for line in caplog.text.splitlines() if secret in line]
    # Counted: the views shown, and the refusals by reason.
    samples = await api.metrics()
    assert samples[("image_service_share_views_total", ())] == 1
    refusals = ("image_service_share_refusals_total", (("reason", "share_not_found"),))
    assert samples[refusals] == 1


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "validation_error"),
        ({"image_ids": [], "ttl": 60}, "validation_error"),
        ({"tag": "a", "album_id": "0" * 32}, "validation_error"),
        ({"tag": "a", "ttl": 10}, "validation_error"),
        ({"tag": "a", "ttl": 400 * 86400}, "validation_error"),
        ({"tag": "a", "expires_at": "2020-01-01T00:00:00Z"}, "invalid_expiry"),
        ({"tag": "a", "ttl": 60, "expires_at": "2030-01-01T00:00:00Z"}, "validation_error"),
        ({"tag": "a", "password": "short"}, "validation_error"),
        ({"tag": "a", "presets": ["nonesuch"]}, "invalid_presets"),
        ({"tag": "a\x00"}, "validation_error"),
        ({"tag": "a", "max_views": 0}, "validation_error"),
        ({"image_ids": ["0b5c8f3e-7d2a-4f61-9a1e-2c4b6d8e0f13"]}, "unknown_images"),
    ],
)
async def test_a_malformed_share_request_is_a_422(
    api: Api, body: dict[str, Any], code: str
) -> None:
    status, answer, _ = await api.call("POST", "/shares", json=body)
    assert (status, answer["error"]["code"]) == (422, code), answer


async def test_another_users_album_cannot_be_shared(api: Api) -> None:
    status, album, _ = await api.call("POST", "/albums", user="bob", json={"name": "Bob's"})
    status, answer, _ = await api.call("POST", "/shares", json={"album_id": album["album_id"]})
    assert (status, answer["error"]["code"]) == (404, "album_not_found")


async def test_share_viewed_reaches_the_webhook_only_when_the_operator_asks(
    make_api: MakeApi, receiver: Receiver
) -> None:
    hooks = {"webhook_url": receiver.url + "/hooks", "webhook_secret": SECRET}
    quiet = await make_api(**hooks)
    asked = await make_api(**hooks, webhook_share_viewed=True)  # this test's subject
    for api in (quiet, asked):
        (image_id,) = await api.ready_images()
        share = await _share(api, image_ids=[image_id])
        assert (await _open(api, share["url"]))[0] == 200
    await receiver.until(3)  # two image.ready, and one share.viewed
    await asyncio.sleep(1)
    kinds = sorted(event["type"] for event in receiver.events())
    assert kinds == ["image.ready", "image.ready", "share.viewed"]
    (viewed,) = [event for event in receiver.events() if event["type"] == "share.viewed"]
    assert viewed["data"]["share_id"] == share["share_id"]
