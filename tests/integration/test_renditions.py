"""Renditions on request: a signed delivery URL per size and format, rendered once, stored, and
served without a token until it expires; allowlists, bounds and rates against abuse."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from PIL import Image

from tests import images
from tests.integration.conftest import Api, MakeApi

RENDERED = ("image_service_renders_total", (("outcome", "rendered"),))
CACHED = ("image_service_renders_total", (("outcome", "cached"),))
REFUSED = ("image_service_renders_total", (("outcome", "refused"),))


async def _ready(api: Api, user: str = "alice", data: bytes | None = None) -> str:
    _, status, image = await api.upload(data or images.jpeg(640, 480), user=user)
    assert status == 200
    assert image["status"] == "ready"
    return str(image["image_id"])


async def _url(api: Api, image_id: str, query: str, user: str = "alice") -> dict[str, Any]:
    status, body, headers = await api.call("GET", f"/images/{image_id}/render?{query}", user=user)
    assert status == 200, body
    assert headers["Cache-Control"] == "no-store"
    return body  # type: ignore[no-any-return]


async def _get(api: Api, url: str, **headers: str) -> tuple[int, bytes, Any]:
    async with api.http.get(url, headers=headers) as response:
        return response.status, await response.read(), response.headers


def _size(data: bytes) -> tuple[str | None, tuple[int, int]]:
    with Image.open(io.BytesIO(data)) as image:
        return image.format, image.size


@pytest.fixture
async def image_id(api: Api) -> str:
    return await _ready(api)


async def test_a_rendition_is_rendered_once_then_served_from_storage(
    api: Api, image_id: str
) -> None:
    before = await api.metrics()
    rendition = await _url(api, image_id, "w=320&format=webp")
    assert datetime.fromisoformat(rendition["expires_at"]) > datetime.now(UTC)

    status, data, headers = await _get(api, rendition["url"])  # no token
    assert status == 200
    assert headers["Content-Type"] == "image/webp"
    assert _size(data) == ("WEBP", (320, 240))
    assert headers["Cache-Control"].startswith("public, max-age=")
    assert "Vary" not in headers
    etag = headers["ETag"]

    status, again, headers = await _get(api, rendition["url"])
    assert (status, again, headers["ETag"]) == (200, data, etag)
    status, empty, _ = await _get(api, rendition["url"], **{"If-None-Match": etag})
    assert (status, empty) == (304, b"")

    after = await api.metrics()
    assert after[RENDERED] - before.get(RENDERED, 0) == 1
    assert after[CACHED] - before.get(CACHED, 0) == 2
    made_from = urlsplit(rendition["url"]).path.split("/")[4]  # the image's edition
    stored = [key for key in api.object_keys() if "/r/" in key]
    assert stored == [f"images/alice/{image_id}/r/{made_from}/320x0-inside-q0.webp"]
    assert headers["Cache-Control"].endswith(", immutable")


async def test_the_url_stays_the_same_within_its_window(api: Api, image_id: str) -> None:
    first = await _url(api, image_id, "w=320&h=320&fit=cover")
    second = await _url(api, image_id, "w=320&h=320&fit=cover")
    assert first == second


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        ("image/avif,image/webp,image/*,*/*;q=0.8", "image/avif"),
        ("image/webp,*/*", "image/webp"),
        ("*/*", "image/jpeg"),
        ("", "image/jpeg"),
    ],
)
async def test_auto_follows_the_accept_header(
    api: Api, image_id: str, accept: str, content_type: str
) -> None:
    rendition = await _url(api, image_id, "w=256")  # format=auto is the default
    status, data, headers = await _get(api, rendition["url"], Accept=accept)
    assert status == 200
    assert headers["Content-Type"] == content_type
    assert headers["Vary"] == "Accept"
    assert _size(data)[1] == (256, 192)


@pytest.mark.parametrize(
    ("query", "size"),
    [
        ("w=256&h=256&fit=inside", (256, 192)),
        ("w=256&h=256&fit=contain", (256, 256)),
        ("w=256&h=256&fit=cover", (256, 256)),
        ("h=128", (171, 128)),
        ("w=1920", (640, 480)),  # never upscaled
        ("preset=avatar", (128, 128)),
    ],
)
async def test_fits_and_presets(api: Api, image_id: str, query: str, size: tuple[int, int]) -> None:
    rendition = await _url(api, image_id, query)
    status, data, _ = await _get(api, rendition["url"], Accept="image/webp")
    assert status == 200
    assert _size(data)[1] == size


async def test_contain_pads_with_transparency_where_the_format_has_it(
    api: Api, image_id: str
) -> None:
    rendition = await _url(api, image_id, "w=256&h=256&fit=contain&format=webp")
    _, data, _ = await _get(api, rendition["url"])
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == "RGBA"
        assert image.getpixel((128, 2))[3] == 0  # the bar above the 256x192 picture
        assert image.getpixel((128, 128))[3] == 255


def _tampered(url: str, index: int, replacement: str) -> str:
    parts = urlsplit(url)
    segments = parts.path.split("/")  # "", "r", owner, image, edition, spec, expires, signature
    segments[index] = replacement
    return parts._replace(path="/".join(segments)).geturl()


async def test_any_change_to_the_url_is_refused(api: Api, image_id: str) -> None:
    other_image = await _ready(api)
    url = (await _url(api, image_id, "w=320"))["url"]
    segments = urlsplit(url).path.split("/")
    signature = segments[7]
    changes = {
        "owner": _tampered(url, 2, "Ym9i"),  # "bob"
        "image": _tampered(url, 3, other_image),
        "edition": _tampered(url, 4, "0" * 10),
        "size": _tampered(url, 5, segments[5].replace("w320", "w640")),
        "format": _tampered(url, 5, segments[5].replace("auto", "jpeg")),
        "expiry": _tampered(url, 6, str(int(segments[6]) + 3600)),
        "signature": _tampered(url, 7, ("A" if signature[0] != "A" else "B") + signature[1:]),
        "garbage": _tampered(url, 6, "not-a-number"),
        "not base64": _tampered(url, 2, "%%%"),
    }
    for change, changed in changes.items():
        async with api.http.get(changed) as response:
            assert response.status == 403, change
            body = await response.json()
        assert body["error"]["code"] == "invalid_signature", change


async def test_an_expired_url_is_refused(api: Api, image_id: str) -> None:
    rendition = await _url(api, image_id, "w=320")
    expires = datetime.fromisoformat(rendition["expires_at"])
    api.clock.pinned = expires + timedelta(seconds=1)
    async with api.http.get(rendition["url"]) as response:
        assert response.status == 403
        assert (await response.json())["error"]["code"] == "url_expired"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("w=333", "w"),
        ("w=320&h=333", "h"),
        ("w=320&q=77", "q"),
        ("w=320&fit=cover", "fit"),
        ("", "w"),
    ],
)
async def test_sizes_outside_the_allowlist_are_refused_naming_the_allowed(
    api: Api, image_id: str, query: str, field: str
) -> None:
    status, body, _ = await api.call("GET", f"/images/{image_id}/render?{query}")
    assert status == 422
    assert body["error"]["code"] == "rendition_not_allowed"
    assert field in body["error"]["details"]["fields"]
    assert 320 in body["error"]["details"]["allowed"]["w"]


async def test_an_unknown_preset_is_refused_naming_the_presets(api: Api, image_id: str) -> None:
    status, body, _ = await api.call("GET", f"/images/{image_id}/render?preset=poster")
    assert status == 422
    assert "avatar" in body["error"]["details"]["presets"]


async def test_only_the_owner_gets_a_url_and_only_of_a_ready_image(api: Api, image_id: str) -> None:
    status, body, _ = await api.call("GET", f"/images/{image_id}/render?w=320", user="bob")
    assert (status, body["error"]["code"]) == (404, "image_not_found")
    status, _, _ = await api.call(
        "GET", f"/images/{image_id}/render?w=320&user_id=alice", user="root", admin=True
    )
    assert status == 200
    pending = await api.upload_url()
    status, body, _ = await api.call("GET", f"/images/{pending['image_id']}/render?w=320")
    assert (status, body["error"]["code"]) == (409, "image_not_ready")


async def test_redirect_answers_302_to_the_url(api: Api, image_id: str) -> None:
    rendition = await _url(api, image_id, "w=320")
    status, _, headers = await api.call(
        "GET", f"/images/{image_id}/render?w=320&redirect=true", allow_redirects=False
    )
    assert (status, headers["Location"]) == (302, rendition["url"])


async def test_concurrent_first_requests_render_once(api: Api, image_id: str) -> None:
    before = await api.metrics()
    url = (await _url(api, image_id, "w=640&h=640&fit=cover&format=webp"))["url"]
    answers = await asyncio.gather(*(_get(api, url) for _ in range(8)))
    assert {status for status, _, _ in answers} == {200}
    assert len({data for _, data, _ in answers}) == 1
    after = await api.metrics()
    assert after[RENDERED] - before.get(RENDERED, 0) == 1


async def test_deleting_the_image_deletes_its_renditions(api: Api, image_id: str) -> None:
    urls = [(await _url(api, image_id, query))["url"] for query in ("w=320", "w=128&format=jpeg")]
    for url in urls:
        assert (await _get(api, url))[0] == 200
    assert len([key for key in api.object_keys() if "/r/" in key]) == 2
    status, _, _ = await api.call("DELETE", f"/images/{image_id}", params={"permanent": "true"})
    assert status == 204
    assert api.object_keys() == []
    for url in urls:  # not even from the process's memory
        async with api.http.get(url) as response:
            assert response.status == 404
            assert (await response.json())["error"]["code"] == "image_not_found"


async def test_renders_beyond_the_bound_are_refused_with_retry_after(make_api: MakeApi) -> None:
    """A test about IMAGE_SERVICE_MAX_CONCURRENT_RENDERS: one render at a time in the process."""
    api = await make_api(max_concurrent_renders=1)
    image_id = await _ready(api, data=images.jpeg(1600, 1200))
    urls = [(await _url(api, image_id, f"w={w}&format=avif"))["url"] for w in (1280, 1024, 800)]
    answers = await asyncio.gather(*(_get(api, url) for url in urls))
    statuses = sorted(status for status, _, _ in answers)
    assert statuses[0] == 200
    assert 503 in statuses
    busy = next(headers for status, _, headers in answers if status == 503)
    assert busy["Retry-After"] == "1"
    for url in urls:  # each is made on a later try
        assert (await _get(api, url))[0] == 200
    assert (await api.metrics())[REFUSED] >= 1


async def test_a_user_has_a_rate_of_new_renditions(make_api: MakeApi) -> None:
    """A test about IMAGE_SERVICE_RENDER_BURST: two new renditions, then 429; stored ones
    are still served."""
    api = await make_api(render_burst=2, render_rate_per_minute=1)
    image_id = await _ready(api)
    urls = [(await _url(api, image_id, f"w={w}"))["url"] for w in (320, 256, 128)]
    assert (await _get(api, urls[0]))[0] == 200
    assert (await _get(api, urls[1]))[0] == 200
    status, _, headers = await _get(api, urls[2])
    assert status == 429
    assert int(headers["Retry-After"]) > 0
    assert (await _get(api, urls[0]))[0] == 200  # already stored: not a new rendition
