"""Variants and metadata privacy, on real image bytes (pure functions, no servers needed)."""

from __future__ import annotations

import io
from dataclasses import replace

from PIL import Image

from image_service.imaging.render import (
    DEFAULT_VARIANTS,
    VariantSpec,
    render_variants,
    strip_jpeg_gps,
)
from image_service.worker.pipeline import ProcessingPolicy
from tests import images


def _scan_data(jpeg: bytes) -> bytes:
    """The entropy-coded image data: everything from the start-of-scan marker on."""
    return jpeg[jpeg.index(b"\xff\xda") :]


def test_default_variants_have_the_right_sizes_and_formats() -> None:
    rendering = render_variants(images.noisy("JPEG", 2000, 1500), DEFAULT_VARIANTS)
    found = {(v.name, v.format): v for v in rendering.variants}
    assert set(found) == {
        ("thumb", "jpeg"),
        ("thumb", "webp"),
        ("medium", "jpeg"),
        ("medium", "webp"),
    }
    for (name, fmt), variant in found.items():
        expected = {"thumb": (256, 192), "medium": (1024, 768)}[name]
        assert (variant.width, variant.height) == expected
        with Image.open(io.BytesIO(variant.data)) as decoded:
            assert decoded.size == expected
            assert decoded.format == {"jpeg": "JPEG", "webp": "WEBP"}[fmt]


def test_small_images_are_never_upscaled() -> None:
    rendering = render_variants(images.png(100, 50), DEFAULT_VARIANTS)
    assert {(v.width, v.height) for v in rendering.variants} == {(100, 50)}


def test_variants_carry_no_metadata_and_follow_the_orientation() -> None:
    original = images.jpeg_with_orientation_and_gps(300, 200, orientation=6)
    rendering = render_variants(original, (VariantSpec("thumb", 256),))
    for variant in rendering.variants:
        # Orientation 6: stored 300x200 landscape displays as 200x300 portrait.
        assert (variant.width, variant.height) == (171, 256)
        with Image.open(io.BytesIO(variant.data)) as decoded:
            assert not decoded.getexif()
            assert not {"exif", "icc_profile", "xmp", "comment"} & set(decoded.info)
            # The blue band stored on the left is at the top once rotated for display.
            red, _, blue = decoded.convert("RGB").getpixel((decoded.width // 2, 5))
            assert blue > red
        assert b"ExampleCam" not in variant.data
        assert b"Exif" not in variant.data


def test_gps_is_removed_losslessly_from_jpeg_originals() -> None:
    original = images.jpeg_with_orientation_and_gps()
    assert original.count(b"ExampleCam") == 1
    stripped = strip_jpeg_gps(original)
    with Image.open(io.BytesIO(stripped)) as image:
        exif = image.getexif()
        assert 0x8825 not in exif
        assert not exif.get_ifd(0x8825)
        assert exif[0x0112] == 6, "other metadata stays"
        assert exif[0x010F] == "ExampleCam"
    assert _scan_data(stripped) == _scan_data(original), "the image data is byte-identical"
    with Image.open(io.BytesIO(stripped)) as after, Image.open(io.BytesIO(original)) as before:
        assert after.tobytes() == before.tobytes()


def test_an_original_without_gps_is_left_as_it_is() -> None:
    plain = images.jpeg()
    assert strip_jpeg_gps(plain) is plain
    png = images.png()
    assert strip_jpeg_gps(png) is png, "not a JPEG: untouched"


def test_the_placeholder_colour_is_the_images_average() -> None:
    rendering = render_variants(images.encode("PNG", 64, 64, (10, 200, 30)), DEFAULT_VARIANTS)
    assert rendering.dominant_color == "#0ac81e"


def test_the_processing_fingerprint_changes_with_what_processing_makes() -> None:
    base = ProcessingPolicy(variants=DEFAULT_VARIANTS, keep_gps=False, scan_url_expiry=300)
    same = replace(base, variants=tuple(replace(spec) for spec in DEFAULT_VARIANTS))
    assert same.fingerprint == base.fingerprint
    assert replace(base, scan_url_expiry=60).fingerprint == base.fingerprint  # not an output
    others = [
        replace(base, keep_gps=True),
        replace(base, variants=DEFAULT_VARIANTS[:1]),
        replace(base, variants=(VariantSpec("thumb", 255), *DEFAULT_VARIANTS[1:])),
        replace(base, variants=(VariantSpec("thumb", 256, ("jpeg",)), *DEFAULT_VARIANTS[1:])),
        replace(base, variants=(VariantSpec("tiny", 256), *DEFAULT_VARIANTS[1:])),
    ]
    fingerprints = {policy.fingerprint for policy in others}
    assert len(fingerprints) == len(others)
    assert base.fingerprint not in fingerprints
