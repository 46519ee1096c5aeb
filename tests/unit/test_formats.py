"""HEIC, HEIF and AVIF in, AVIF out, transparency kept where the output has it, and colours
converted to sRGB from the original's ICC profile."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from image_service.imaging.exif import photo_metadata
from image_service.imaging.formats import content_type_from_magic, ftyp_brands
from image_service.imaging.inspect import ImageRejected, InspectionLimits, inspect_image
from image_service.imaging.render import VariantSpec, render_rendition, render_variants
from tests import images

LIMITS = InspectionLimits(max_pixels=50_000_000, max_frames=100, max_animation_pixels=10**8)


def _ftyp(major: bytes, *compatible: bytes) -> bytes:
    size = 16 + 4 * len(compatible)
    return size.to_bytes(4, "big") + b"ftyp" + major + b"\x00\x00\x00\x00" + b"".join(compatible)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (_ftyp(b"heic", b"mif1", b"heic"), "image/heic"),
        (_ftyp(b"heix", b"mif1"), "image/heic"),
        (_ftyp(b"mif1", b"heic"), "image/heic"),  # the brand that names HEVC decides
        (_ftyp(b"mif1", b"miaf"), "image/heif"),
        (_ftyp(b"avif", b"mif1", b"miaf"), "image/avif"),
        (_ftyp(b"mif1", b"avif"), "image/avif"),
        (_ftyp(b"avis", b"msf1"), "image/avif"),
        (_ftyp(b"isom", b"mp41"), None),  # an MP4 video is an ISO BMFF file too
        (b"\x00\x00\x00\x18ftyp", None),  # cut before its major brand: nothing to tell
    ],
)
def test_isobmff_images_are_known_by_their_ftyp_brands(head: bytes, expected: str | None) -> None:
    assert content_type_from_magic(head + b"\x00" * 8) == expected


def test_a_clients_short_head_still_names_the_brands() -> None:
    head = _ftyp(b"mif1", *[b"abcd"] * 20, b"avif")  # 100 bytes of brands
    assert ftyp_brands(head[:64])[:2] == [b"mif1", b"abcd"]
    assert content_type_from_magic(head) == "image/avif"


@pytest.mark.parametrize(
    ("declared", "data", "size"),
    [
        ("image/heic", images.heic(64, 48), (64, 48)),
        ("image/avif", images.avif(40, 30), (40, 30)),
    ],
)
def test_heic_and_avif_pass_inspection(declared: str, data: bytes, size: tuple[int, int]) -> None:
    inspection = inspect_image(data, declared, LIMITS)
    assert (inspection.content_type, (inspection.width, inspection.height)) == (declared, size)
    assert inspection.frames == 1


def test_heic_declared_as_jpeg_is_a_mismatch() -> None:
    with pytest.raises(ImageRejected) as refused:
        inspect_image(images.heic(), "image/jpeg", LIMITS)
    assert refused.value.code == "content_mismatch"
    assert refused.value.details["detected"] == "image/heic"


@pytest.mark.parametrize("data", [images.heic(), images.avif()], ids=["heic", "avif"])
def test_bytes_after_the_last_box_are_refused(data: bytes) -> None:
    declared = content_type_from_magic(data)
    assert declared is not None
    with pytest.raises(ImageRejected) as refused:
        inspect_image(data + b"<html>hidden</html>", declared, LIMITS)
    assert refused.value.code == "trailing_data"


@pytest.mark.parametrize("data", [images.heic(), images.avif()], ids=["heic", "avif"])
def test_a_truncated_file_is_refused(data: bytes) -> None:
    declared = content_type_from_magic(data)
    assert declared is not None
    with pytest.raises(ImageRejected) as refused:
        inspect_image(data[: len(data) * 2 // 3], declared, LIMITS)
    assert refused.value.code in {"corrupt_image", "trailing_data"}


def test_a_heic_over_the_pixel_limit_is_refused_before_decoding() -> None:
    small = InspectionLimits(max_pixels=1000, max_frames=1, max_animation_pixels=1000)
    with pytest.raises(ImageRejected) as refused:
        inspect_image(images.heic(64, 48), "image/heic", small)
    assert refused.value.code == "too_many_pixels"


def test_variants_can_be_avif_and_a_heic_original_is_rendered() -> None:
    rendering = render_variants(images.heic(640, 480), (VariantSpec("thumb", 256, ("avif",)),))
    (variant,) = rendering.variants
    assert (variant.format, variant.content_type, variant.extension) == (
        "avif",
        "image/avif",
        ".avif",
    )
    with Image.open(io.BytesIO(variant.data)) as decoded:
        assert (decoded.format, decoded.size) == ("AVIF", (256, 192))


@pytest.mark.parametrize("palette", [False, True], ids=["rgba", "palette-with-trns"])
def test_transparency_is_kept_in_webp_and_avif_and_flattened_onto_white_in_jpeg(
    palette: bool,
) -> None:
    data = images.transparent_png(640, 480, palette=palette)
    spec = VariantSpec("thumb", 256, ("jpeg", "webp", "avif"))
    variants = {v.format: v for v in render_variants(data, (spec,)).variants}
    for fmt in ("webp", "avif"):
        with Image.open(io.BytesIO(variants[fmt].data)) as decoded:
            assert decoded.mode == "RGBA", fmt
            assert decoded.getpixel((250, 100))[3] == 0, fmt  # the transparent half
            assert decoded.getpixel((10, 100))[3] == 255, fmt  # the opaque half
    with Image.open(io.BytesIO(variants["jpeg"].data)) as decoded:
        assert decoded.mode == "RGB"
        assert all(channel > 245 for channel in decoded.getpixel((250, 100)))  # white
        assert decoded.getpixel((10, 100)) == pytest.approx((220, 20, 20), abs=30)


def _p3_to_srgb(color: tuple[int, int, int]) -> tuple[int, int, int]:
    """The sRGB value of a Display P3 colour, computed from the matrices: P3 linear -> XYZ
    (D50) -> linear sRGB (D50-adapted, Bradford) -> sRGB's curve."""
    linear = [(c / 255) ** images.P3_GAMMA for c in color]
    xyz = [sum(m * v for m, v in zip(row, linear, strict=True)) for row in images.P3_TO_XYZ_D50]
    xyz_d50_to_srgb = (
        (3.1339, -1.6169, -0.4906),
        (-0.9788, 1.9161, 0.0335),
        (0.0719, -0.2290, 1.4052),
    )
    srgb_linear = [sum(m * v for m, v in zip(row, xyz, strict=True)) for row in xyz_d50_to_srgb]

    def encode(v: float) -> int:
        v = min(1.0, max(0.0, v))
        v = 12.92 * v if v <= 0.0031308 else 1.055 * v ** (1 / 2.4) - 0.055
        return round(255 * v)

    red, green, blue = (encode(v) for v in srgb_linear)
    return red, green, blue


def test_a_display_p3_photo_is_converted_to_srgb() -> None:
    p3 = (60, 170, 90)  # a green that P3 and sRGB render visibly apart
    expected = _p3_to_srgb(p3)
    assert max(abs(a - b) for a, b in zip(expected, p3, strict=True)) >= 15  # a visible shift
    data = images.display_p3_jpeg(p3, 640, 480)
    spec = VariantSpec("thumb", 256, ("jpeg", "webp", "avif"))
    for variant in render_variants(data, (spec,)).variants:
        with Image.open(io.BytesIO(variant.data)) as decoded:
            assert "icc_profile" not in decoded.info or not decoded.info["icc_profile"]
            pixel = decoded.convert("RGB").getpixel((128, 96))
        assert max(abs(a - b) for a, b in zip(pixel, expected, strict=True)) <= 4, (
            variant.format,
            pixel,
            expected,
        )


def test_no_variant_of_a_heic_carries_its_gps() -> None:
    exif = Image.Exif()
    exif[0x010F] = "Apple"  # Make
    exif.get_ifd(0x8825)[2] = (48.0, 51.0, 24.0)  # GPSLatitude
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (10, 120, 200)).save(buffer, "HEIF", exif=exif.tobytes())
    with Image.open(io.BytesIO(buffer.getvalue())) as original:
        assert 0x8825 in original.getexif()  # the original has it
    spec = VariantSpec("thumb", 256, ("jpeg", "webp", "avif"))
    for variant in render_variants(buffer.getvalue(), (spec,)).variants:
        with Image.open(io.BytesIO(variant.data)) as decoded:
            assert not decoded.getexif(), variant.format
            assert not decoded.info.get("exif"), variant.format


def test_no_rendition_carries_gps_either() -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8825)[2] = (48.0, 51.0, 24.0)  # GPSLatitude
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (10, 120, 200)).save(buffer, "JPEG", exif=exif.tobytes())
    for fmt in ("jpeg", "webp", "avif"):
        rendition = render_rendition(
            buffer.getvalue(), width=320, height=None, fit="inside", fmt=fmt, quality=None
        )
        with Image.open(io.BytesIO(rendition.data)) as decoded:
            assert not decoded.getexif(), fmt


def test_exif_values_are_bounded_and_cleaned() -> None:
    exif = Image.Exif()
    exif[0x010F] = "A\u2028B" + "x" * 500  # a line separator, and far too long
    exif[0x0112] = 42  # no such orientation
    details = exif.get_ifd(0x8769)
    details[0x9003] = "1066:10:14 09:00:00"  # out of range
    details[0x829D] = float("nan")
    details[0x8827] = -5
    photo = photo_metadata(exif, keep_gps=True)
    assert photo is not None
    assert photo.camera is not None
    assert len(photo.camera) == 100
    assert (photo.taken_at, photo.f_number, photo.iso, photo.orientation) == (
        None,
        None,
        None,
        None,
    )
    assert photo_metadata(Image.Exif(), keep_gps=True) is None
