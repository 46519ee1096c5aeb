"""Completion inspects what arrived: only a whole, plain image of sane size becomes ready.

Each case is uploaded for real, completed through the API, refused with its own code, and its
object deleted."""

from __future__ import annotations

import pytest

from tests import images
from tests.integration.conftest import Api, MakeApi


async def _assert_rejected(api: Api, content_type: str, data: bytes, code: str) -> None:
    upload = await api.upload_url(content_type=content_type)
    assert await api.send_to_s3(upload, data) == 200
    status, payload, _ = await api.call("POST", f"/images/{upload['image_id']}/complete")
    assert (status, payload["error"]["code"]) == (422, code), payload
    assert api.object_keys() == [], "the rejected object is deleted"
    status, record, _ = await api.call("GET", f"/images/{upload['image_id']}")
    assert record["status"] == "rejected"


@pytest.mark.parametrize(
    ("content_type", "data", "code"),
    [
        pytest.param("image/jpeg", images.HTML, "content_mismatch", id="html"),
        pytest.param("image/png", images.SVG, "content_mismatch", id="svg"),
        pytest.param("image/gif", images.SCRIPT, "content_mismatch", id="script"),
        pytest.param("image/jpeg", images.jpeg() + images.HTML, "trailing_data", id="jpeg+html"),
        pytest.param("image/png", images.png() + images.HTML, "trailing_data", id="png+html"),
        pytest.param("image/gif", images.gif() + images.SVG, "trailing_data", id="gif+svg"),
        pytest.param("image/webp", images.webp() + images.HTML, "trailing_data", id="webp+html"),
        pytest.param(
            "image/jpeg",
            images.jpeg_with_comment(b"<html><script>alert(1)</script></html>"),
            "embedded_markup",
            id="html-in-jpeg-comment",
        ),
        pytest.param(
            "image/jpeg", images.noisy("JPEG")[:1500], "corrupt_image", id="truncated-jpeg"
        ),
        pytest.param("image/png", images.noisy("PNG")[:2000], "corrupt_image", id="truncated-png"),
        pytest.param(
            "image/png", images.png()[:8] + b"\x00" * 64, "corrupt_image", id="png-magic-only"
        ),
        pytest.param(
            "image/png", images.bilevel_png(8000, 8000), "too_many_pixels", id="bomb-64mp"
        ),
    ],
)
async def test_what_is_not_a_plain_whole_image_is_rejected(
    api: Api, content_type: str, data: bytes, code: str
) -> None:
    await _assert_rejected(api, content_type, data, code)


async def test_the_pixel_limit_is_configurable(make_api: MakeApi) -> None:
    api = await make_api(max_pixels=100 * 100)
    await _assert_rejected(api, "image/png", images.png(101, 100), "too_many_pixels")
    _, status, ready = await api.upload(images.png(100, 100), content_type="image/png")
    assert (status, ready["width"], ready["height"]) == (200, 100, 100)


async def test_animations_with_too_many_frames_are_rejected(make_api: MakeApi) -> None:
    api = await make_api(max_frames=10)
    await _assert_rejected(api, "image/gif", images.animated_gif(11), "too_many_frames")


async def test_animations_with_too_many_pixels_are_rejected(make_api: MakeApi) -> None:
    api = await make_api(max_animation_pixels=20 * 32 * 32)
    await _assert_rejected(api, "image/gif", images.animated_gif(21, 32, 32), "too_many_pixels")


async def test_a_modest_animation_is_accepted(api: Api) -> None:
    _, status, ready = await api.upload(images.animated_gif(12, 20, 10), content_type="image/gif")
    assert (status, ready["status"], ready["width"], ready["height"]) == (200, "ready", 20, 10)
