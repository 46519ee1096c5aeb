"""ThumbHash placeholders: byte for byte what the reference algorithm's Python port makes of
opaque images (its alpha path is broken: it fails on any transparent image), and for
transparent ones, what the reference's header says they hold."""

from __future__ import annotations

import base64

import pytest
import thumbhash as reference
from PIL import Image

from image_service.imaging.placeholder import MAX_SIDE, rgba_to_thumbhash
from image_service.imaging.render import VariantSpec, render_variants
from tests import images


def _photo(width: int, height: int) -> Image.Image:
    noise = Image.effect_noise((width, height), 60).convert("RGB")
    gradient = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    return Image.blend(noise, gradient, 0.5).convert("RGBA")


@pytest.mark.parametrize("size", [(100, 75), (75, 100), (33, 17), (1, 1), (100, 100)])
def test_an_opaque_image_hashes_as_the_reference_does(size: tuple[int, int]) -> None:
    pixels = _photo(*size).tobytes()
    expected = bytes(reference.rgba_to_thumb_hash(*size, list(pixels)))
    assert rgba_to_thumbhash(*size, pixels) == expected


def test_a_transparent_image_says_so_in_its_header() -> None:
    image = _photo(80, 60)
    image.putalpha(128)
    hashed = rgba_to_thumbhash(80, 60, image.tobytes())
    header24 = hashed[0] | hashed[1] << 8 | hashed[2] << 16
    assert header24 >> 23 == 1  # has alpha
    assert round((hashed[5] & 15) / 15, 1) == 0.5  # its average alpha, 128/255
    assert (hashed[4] >> 7) == 1  # landscape


def test_more_than_the_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        rgba_to_thumbhash(MAX_SIDE + 1, 10, bytes(4 * (MAX_SIDE + 1) * 10))


def _average_rgb(hashed: bytes) -> tuple[float, float, float]:
    """The reference decoder's average colour (thumbHashToAverageRGBA)."""
    header = hashed[0] | hashed[1] << 8 | hashed[2] << 16
    lum, p, q = (
        (header & 63) / 63,
        ((header >> 6) & 63) / 31.5 - 1,
        ((header >> 12) & 63) / 31.5 - 1,
    )
    blue = lum - 2 / 3 * p
    red = (3 * lum - blue + q) / 2
    return red, red - q, blue


def test_every_ready_image_carries_one_of_its_colours() -> None:
    rendering = render_variants(images.jpeg(640, 480), (VariantSpec("thumb", 256),))
    decoded = base64.b64decode(rendering.thumbhash)
    assert 5 <= len(decoded) <= 25
    assert _average_rgb(decoded) == pytest.approx((200 / 255, 30 / 255, 30 / 255), abs=0.05)
