"""Where a cover rendition crops: the centre, the owner's focal point, or what is salient (libvips'
attention); and a focal point's change reaching every URL and stored rendition."""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import urlsplit

import pytest
from PIL import Image, ImageDraw

from tests.integration.conftest import Api

# A quiet grey-green field 1000 px wide with a red disc near its right edge (centred at x=910):
# a square cover (256x256: 200 is not an allowed size) of its 600 px height keeps a 600 px wide
# window, the middle one 200-800.
WIDTH, HEIGHT = 1000, 600
OBJECT = (860, 250, 960, 350)


def _photo_with_an_object_on_the_right() -> bytes:
    image = Image.new("RGB", (WIDTH, HEIGHT), (96, 112, 104))
    ImageDraw.Draw(image).ellipse(OBJECT, fill=(230, 30, 30))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def _nothing_salient() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (WIDTH, HEIGHT), (128, 128, 128)).save(buffer, "PNG")
    return buffer.getvalue()


def _red_pixels(data: bytes) -> int:
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (256, 256)
        pixels = image.convert("RGB").get_flattened_data()
    return sum(1 for r, g, _ in pixels if r > 180 and g < 90)  # type: ignore[misc]


async def _ready(api: Api, data: bytes, content_type: str = "image/jpeg") -> str:
    _, status, image = await api.upload(data, content_type=content_type)
    assert (status, image["status"]) == (200, "ready")
    return str(image["image_id"])


async def _cover(api: Api, image_id: str, gravity: str | None = None) -> tuple[str, bytes]:
    query = "w=256&h=256&fit=cover&format=jpeg" + (f"&gravity={gravity}" if gravity else "")
    status, body, _ = await api.call("GET", f"/images/{image_id}/render?{query}")
    assert status == 200, body
    async with api.http.get(body["url"]) as response:
        assert response.status == 200
        return str(body["url"]), await response.read()


async def _set_focal(api: Api, image_id: str, focal: Any) -> dict[str, Any]:
    status, body, _ = await api.call("PATCH", f"/images/{image_id}", json={"focal": focal})
    assert status == 200, body
    return body  # type: ignore[no-any-return]


async def test_auto_and_a_focal_point_keep_the_object_that_centre_cuts_off(api: Api) -> None:
    image_id = await _ready(api, _photo_with_an_object_on_the_right())
    disc = 3.14 * 50 * 50 * (256 / 600) ** 2  # the disc's area, shrunk as 600 px -> 256

    centre_url, centre = await _cover(api, image_id, "center")
    assert "-gcenter/" in centre_url
    assert _red_pixels(centre) == 0, "the object lies outside the middle window"
    auto_url, auto = await _cover(api, image_id)  # no focal point: auto
    assert "-gauto/" in auto_url
    assert _red_pixels(auto) > 0.8 * disc

    image = await _set_focal(api, image_id, {"x": 0.91, "y": 0.5})
    assert image["focal"] == {"x": 0.91, "y": 0.5}
    focal_url, focal = await _cover(api, image_id)  # a focal point: focal by default
    assert "-gfocal/" in focal_url
    assert _red_pixels(focal) > 0.8 * disc
    # A focal point on the left side, asked for explicitly, beats what is salient.
    await _set_focal(api, image_id, {"x": 0.0, "y": 0.5})
    assert _red_pixels((await _cover(api, image_id, "focal"))[1]) == 0
    assert _red_pixels((await _cover(api, image_id, "auto"))[1]) > 0.8 * disc


async def test_an_image_with_nothing_salient_still_renders(api: Api) -> None:
    image_id = await _ready(api, _nothing_salient(), "image/png")
    _, data = await _cover(api, image_id, "auto")
    assert _red_pixels(data) == 0


async def test_a_new_focal_point_means_new_urls_and_the_old_ones_are_gone(api: Api) -> None:
    image_id = await _ready(api, _photo_with_an_object_on_the_right())
    before, _ = await _cover(api, image_id, "center")  # center does not use it: still changes
    await _set_focal(api, image_id, {"x": 0.25, "y": 0.75})
    after, _ = await _cover(api, image_id, "center")
    assert urlsplit(before).path.split("/")[4] != urlsplit(after).path.split("/")[4]
    async with api.http.get(before) as response:
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "image_not_found"
    # Stored under each edition: the new point's renders are new objects.
    editions = {key.split("/")[4] for key in api.object_keys() if "/r/" in key}
    assert len(editions) == 2

    cleared = await _set_focal(api, image_id, None)
    assert cleared["focal"] is None
    status, body, _ = await api.call("GET", f"/images/{image_id}")
    assert (status, body["focal"]) == (200, None)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"focal": {"x": 1.5, "y": 0.5}}, "x"),
        ({"focal": {"x": -0.1, "y": 0.5}}, "x"),
        ({"focal": {"x": 0.5}}, "y"),
        ({"focal": {"x": "NaN", "y": 0.5}}, "x"),
        ({"focal": {"x": 0.5, "y": 0.5, "z": 1}}, "z"),
        ({"focal": [0.5, 0.5]}, "_schema"),
        ({"focal": "middle"}, "_schema"),
    ],
)
async def test_a_focal_point_outside_the_image_is_422(
    api: Api, body: dict[str, Any], field: str
) -> None:
    image_id = (await api.upload_url())["image_id"]
    status, payload, _ = await api.call("PATCH", f"/images/{image_id}", json=body)
    assert (status, payload["error"]["code"]) == (422, "validation_error")
    assert field in str(payload["error"]["details"]["fields"]["focal"])


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("w=256&h=256&fit=cover&gravity=north", "gravity"),
        ("w=256&fit=inside&gravity=auto", "gravity"),
        ("w=256&h=256&fit=contain&gravity=focal", "gravity"),
    ],
)
async def test_gravity_goes_with_cover_only(api: Api, query: str, field: str) -> None:
    image_id = await _ready(api, _nothing_salient(), "image/png")
    status, payload, _ = await api.call("GET", f"/images/{image_id}/render?{query}")
    assert status == 422, payload
    assert field in payload["error"]["details"]["fields"]
