"""Turning a verified original into what is served: sized variants without metadata, and an
original without GPS. Pure functions over bytes (Pillow), meant to run off the event loop.
"""

from __future__ import annotations

import functools
import io
import struct
from dataclasses import dataclass
from typing import IO

from PIL import Image, ImageCms, ImageOps

import image_service.imaging.inspect  # noqa: F401  # registers the HEIC/HEIF opener
from image_service.imaging.exif import PhotoMetadata, photo_metadata
from image_service.imaging.placeholder import thumbhash
from image_service.imaging.spool import Spooled

_FORMATS = {
    "jpeg": ("JPEG", "image/jpeg", ".jpg"),
    "webp": ("WEBP", "image/webp", ".webp"),
    "avif": ("AVIF", "image/avif", ".avif"),
}
# Formats that keep an alpha channel: a transparent image stays transparent in them.
_WITH_ALPHA = frozenset({"webp", "avif"})
_JPEG_QUALITY = 82
_WEBP_QUALITY = 80
_WEBP_METHOD = 2
# AVIF's encoder (libaom through libavif) at its default speed 6 spends ~0.5 s of CPU on a
# 1024 px variant; speed 8 spends a twelfth of that for files within a few percent of the size.
_AVIF_QUALITY = 60
_AVIF_SPEED = 8
# What a JPEG variant of a transparent image is flattened onto.
_JPEG_BACKGROUND = (255, 255, 255)
_GPS_IFD_TAG = 0x8825
_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True, slots=True)
class VariantSpec:
    name: str
    max_side: int
    formats: tuple[str, ...] = ("jpeg", "webp")  # any of _FORMATS


@dataclass(frozen=True, slots=True)
class RenderedVariant:
    name: str
    format: str  # "jpeg" | "webp" | "avif"
    content_type: str
    extension: str
    width: int
    height: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Rendering:
    variants: list[RenderedVariant]
    dominant_color: str  # "#rrggbb": a placeholder while variants load
    thumbhash: str  # base64: a blurred preview of the whole image, transparency included
    photo: PhotoMetadata | None = None  # what its EXIF says (when taken, camera...)


DEFAULT_VARIANTS = (VariantSpec("thumb", 256), VariantSpec("medium", 1024))


def render_variants(
    data: bytes | IO[bytes], specs: tuple[VariantSpec, ...], *, keep_gps: bool = False
) -> Rendering:
    """Decodes once (at the smallest scale that still covers the largest variant), applies the
    EXIF orientation, then shrinks step by step from the largest variant to the smallest.

    Colours are converted to sRGB from the original's ICC profile (Display P3, Adobe RGB...),
    so that every browser shows them alike. Transparency is kept in WebP and AVIF, and
    flattened onto white in JPEG. Variants are encoded with no EXIF, XMP, ICC or comment:
    nothing of the original's metadata.
    """
    largest = max(spec.max_side for spec in specs)
    file = io.BytesIO(data) if isinstance(data, bytes) else data
    file.seek(0)
    with Image.open(file) as source:
        # JPEG only: libjpeg decodes at 1/2, 1/4 or 1/8 scale when that still covers `largest`
        # (the decode is most of the cost: 12 MP at 1/2 scale is a quarter of the work).
        # YCbCr is what a JPEG stores and what the JPEG encoder wants: skipping the round trip
        # through RGB saves two colour conversions of the largest image (not when a profile
        # needs converting: that starts from RGB).
        icc = source.info.get("icc_profile")
        source.draft("RGB" if icc else "YCbCr", (largest, largest))
        source.load()
        # Only a rotated or mirrored image pays for a transposed copy.
        exif = source.getexif()
        photo = photo_metadata(exif, keep_gps=keep_gps)
        oriented = exif.get(_ORIENTATION_TAG, 1) in (None, 1)
        current = _to_srgb(_normalize(source if oriented else ImageOps.exif_transpose(source)), icc)
    rendered: list[RenderedVariant] = []
    for spec in sorted(specs, key=lambda s: s.max_side, reverse=True):
        scale = min(1.0, spec.max_side / max(current.size))
        if scale < 1.0:
            size = (max(1, round(current.width * scale)), max(1, round(current.height * scale)))
            current = _shrink(current, size)
        for fmt in spec.formats:
            rendered.append(_encode(spec.name, fmt, current))
    rendered.sort(key=lambda v: (v.name, v.format))
    average = _flatten(current).resize((1, 1), Image.Resampling.BOX).convert("RGB")
    red, green, blue = average.getpixel((0, 0))  # type: ignore[misc]
    return Rendering(rendered, f"#{red:02x}{green:02x}{blue:02x}", thumbhash(current), photo)


def _shrink(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Each step starts from the previous, larger variant rather than the original."""
    factor = image.width // size[0]
    if factor > 1 and (image.width, image.height) == (size[0] * factor, size[1] * factor):
        # An exact integer ratio (1024 -> 512 -> 256): averaging factor x factor blocks is exact
        # and several times cheaper than a resampling filter.
        return image.reduce(factor)
    # Pillow's bilinear downscale widens its kernel with the factor, so it antialiases.
    return image.resize(size, Image.Resampling.BILINEAR)


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in {"RGBA", "LA", "PA"} or (
        image.mode == "P" and "transparency" in image.info
    )


def _normalize(image: Image.Image) -> Image.Image:
    """RGBA when the image has any transparency (an alpha channel, or a palette or grey with a
    transparent entry: PNG's tRNS, GIF's), else RGB or JPEG's own YCbCr."""
    if _has_alpha(image) or (image.mode in {"L", "RGB"} and "transparency" in image.info):
        return image.convert("RGBA")
    return image if image.mode in {"RGB", "YCbCr"} else image.convert("RGB")


def _flatten(image: Image.Image) -> Image.Image:
    """No alpha (JPEG has none): transparency composited onto the background."""
    if image.mode != "RGBA":
        return image
    background = Image.new("RGB", image.size, _JPEG_BACKGROUND)
    background.paste(image, mask=image.getchannel("A"))
    return background


_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


@functools.lru_cache(maxsize=16)
def _srgb_transform(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """The conversion of ``icc``'s colours to sRGB (phones embed the same few profiles, so the
    transforms are kept); None for a profile that is sRGB already or cannot be read."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if ImageCms.getProfileDescription(profile).strip().startswith("sRGB"):
            return None
        return ImageCms.buildTransform(
            profile, _SRGB, mode, mode, renderingIntent=ImageCms.Intent.PERCEPTUAL
        )
    except (OSError, ImageCms.PyCMSError):
        return None  # a broken profile: the pixels are taken as sRGB, as browsers do


def _to_srgb(image: Image.Image, icc: bytes | None) -> Image.Image:
    if not icc:
        return image
    mode = "RGBA" if image.mode == "RGBA" else "RGB"
    transform = _srgb_transform(icc, mode)
    if transform is None:
        return image
    converted = ImageCms.applyTransform(
        image if image.mode == mode else image.convert(mode), transform
    )
    assert converted is not None  # None only when applied in place
    return converted


def _encode(
    name: str, fmt: str, image: Image.Image, *, quality: int | None = None
) -> RenderedVariant:
    pillow_format, content_type, extension = _FORMATS[fmt]
    buffer = io.BytesIO()
    if fmt not in _WITH_ALPHA:
        image = _flatten(image)
    if fmt == "jpeg":
        image.save(buffer, pillow_format, quality=quality or _JPEG_QUALITY, optimize=False)
    else:
        image = image if image.mode in {"RGB", "RGBA"} else image.convert("RGB")
        if fmt == "webp":
            # method 2 of 6: a third of the default effort for files a few percent larger.
            image.save(buffer, pillow_format, quality=quality or _WEBP_QUALITY, method=_WEBP_METHOD)
        else:
            # Pillow's AVIF encoder would embed the image's ICC profile unless told otherwise.
            image.save(
                buffer,
                pillow_format,
                quality=quality or _AVIF_QUALITY,
                speed=_AVIF_SPEED,
                icc_profile=b"",
            )
    return RenderedVariant(
        name, fmt, content_type, extension, image.width, image.height, buffer.getvalue()
    )


# -- lossless GPS removal from JPEG originals ----------------------------------------------------

_SOI = b"\xff\xd8"
_APP1 = 0xE1
_SOS = 0xDA
_COPY_CHUNK_BYTES = 1024 * 1024
_EXIF_HEADER = b"Exif\x00\x00"
_XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"


def strip_jpeg_gps(data: bytes) -> bytes:
    """The same JPEG with GPS removed from its EXIF (and any XMP naming GPS dropped); ``data``
    itself when there is no GPS (see :func:`strip_jpeg_gps_file`)."""
    stripped = strip_jpeg_gps_file(io.BytesIO(data))
    if stripped is None:
        return data
    with stripped:
        return stripped.file.read()


def strip_jpeg_gps_file(source: IO[bytes]) -> Spooled | None:
    """A copy of the JPEG in ``source`` with GPS removed from its EXIF (and any XMP naming GPS
    dropped), or None when there is no GPS (or it is not a JPEG).

    Only metadata segments before the image data are read and rewritten; the compressed image
    data is copied byte for byte, a megabyte at a time, so pixels are untouched and memory
    stays bounded whatever the file's size.
    """
    source.seek(0)
    if source.read(2) != _SOI:
        return None
    out = bytearray(_SOI)
    changed = False
    while True:
        position = source.tell()
        header = source.read(4)
        if len(header) < 4 or header[0] != 0xFF or header[1] == _SOS:
            break  # the image data (or something malformed): copied as it is
        marker = header[1]
        (length,) = struct.unpack_from(">H", header, 2)
        payload = source.read(length - 2)
        if marker == _APP1 and payload.startswith(_EXIF_HEADER):
            exif = Image.Exif()
            exif.load(payload[len(_EXIF_HEADER) :])
            if _GPS_IFD_TAG in exif:
                del exif[_GPS_IFD_TAG]
                new_payload = _EXIF_HEADER + exif.tobytes()
                out += b"\xff\xe1" + struct.pack(">H", len(new_payload) + 2) + new_payload
                changed = True
                continue
        if marker == _APP1 and payload.startswith(_XMP_HEADER) and b"GPS" in payload:
            changed = True  # XMP can repeat the location (exif:GPSLatitude): drop the packet
            continue
        out += header + payload
    if not changed:
        return None
    stripped = Spooled()
    stripped.write(bytes(out))
    source.seek(position)
    while chunk := source.read(_COPY_CHUNK_BYTES):
        stripped.write(chunk)
    stripped.file.seek(0)
    return stripped


# -- renditions: one size and format on request -------------------------------------------------

FITS = ("inside", "contain", "cover")
GRAVITIES = ("center", "focal", "auto")
RENDITION_FORMATS = tuple(_FORMATS)
# The attention map is found on a copy this small: saliency is a coarse thing (libvips itself
# works at an eighth of the size it is given), and it keeps auto's cost flat for any original.
_ATTENTION_SIDE = 256


def crop_centre(
    image: Image.Image, gravity: str, focal: tuple[float, float] | None
) -> tuple[float, float]:
    """Where a cover crop is centred, as fractions of the width and height:

    - ``center``: the middle;
    - ``focal``: the owner's focal point (the middle when there is none);
    - ``auto``: the most salient point, by libvips' ``smartcrop`` attention strategy (edges,
      skin tones and saturated colours, blurred, their peak). An image with nothing salient
      in it still has a peak somewhere: the crop is then as good as any other.
    """
    if gravity == "focal":
        return focal or (0.5, 0.5)
    if gravity != "auto":
        return 0.5, 0.5
    # Shrunk first (a block average, then a small resize), converted after: the conversions
    # then touch a few thousand pixels, not the whole decode.
    small = image.reduce(max(1, max(image.size) // _ATTENTION_SIDE))
    scale = min(1.0, _ATTENTION_SIDE / max(small.size))
    if scale < 1.0:
        small = small.resize(
            (max(1, round(small.width * scale)), max(1, round(small.height * scale))),
            Image.Resampling.BILINEAR,
        )
    small = _flatten(small).convert("RGB")
    # Loaded by the first auto crop only: libvips takes ~85 ms to load, which a process that
    # never crops (a worker, a command) need not pay.
    import pyvips  # type: ignore[import-untyped]  # ships no types

    vips = pyvips.Image.new_from_memory(small.tobytes(), small.width, small.height, 3, "uchar")
    _, found = vips.smartcrop(
        max(1, small.width // 2),
        max(1, small.height // 2),
        interesting="attention",
        attention_x=True,
        attention_y=True,
    )
    return (found["attention_x"] + 0.5) / small.width, (found["attention_y"] + 0.5) / small.height


def render_rendition(
    data: bytes,
    *,
    width: int | None,
    height: int | None,
    fit: str,
    fmt: str,
    quality: int | None,
    gravity: str = "center",
    focal: tuple[float, float] | None = None,
) -> RenderedVariant:
    """One rendition of an original: at most ``width`` x ``height`` (either may be None: no
    bound), never upscaled, colours in sRGB, no metadata.

    - ``inside``: the whole image, within the box;
    - ``contain``: the whole image, within the box, centred on a canvas of exactly the box
      (transparent where the format has alpha, else the JPEG background);
    - ``cover``: the box filled, the image cropped to the box's proportions around what
      ``gravity`` keeps (:func:`crop_centre`).
    """
    box_w, box_h = width or 1 << 30, height or 1 << 30
    with Image.open(io.BytesIO(data)) as source:
        icc = source.info.get("icc_profile")
        # JPEG decodes at 1/2, 1/4 or 1/8 scale when that still covers the rendition: the
        # size it will have (cover fills the box; the others fit in it), oriented or not.
        w, h = source.size
        if source.getexif().get(_ORIENTATION_TAG, 1) in (5, 6, 7, 8):
            w, h = h, w
        fill = fit == "cover" and width and height
        scale = (max if fill else min)(box_w / w, box_h / h)
        needed = (max(1, round(w * scale)), max(1, round(h * scale)))
        if needed[0] != needed[1] and source.size != (w, h):
            needed = (needed[1], needed[0])  # draft works on the stored (unrotated) image
        source.draft("RGB" if icc else "YCbCr", needed)
        source.load()
        oriented = source.getexif().get(_ORIENTATION_TAG, 1) in (None, 1)
        image = _to_srgb(_normalize(source if oriented else ImageOps.exif_transpose(source)), icc)
    if fit == "cover" and width and height:
        # The largest centred crop of the box's proportions, then shrunk to the box (if larger).
        scale = min(1.0, max(width / image.width, height / image.height))
        crop_w, crop_h = round(width / scale), round(height / scale)
        crop_w, crop_h = min(crop_w, image.width), min(crop_h, image.height)
        left, top = 0, 0
        if (crop_w, crop_h) != image.size:
            centre_x, centre_y = crop_centre(image, gravity, focal)
            # As near the point as the image's edges let the crop be.
            left = min(max(0, round(centre_x * image.width - crop_w / 2)), image.width - crop_w)
            top = min(max(0, round(centre_y * image.height - crop_h / 2)), image.height - crop_h)
        image = image.crop((left, top, left + crop_w, top + crop_h))
        target = (min(width, image.width), min(height, image.height))
        if target != image.size:
            image = _shrink(image, target)
    else:
        scale = min(1.0, box_w / image.width, box_h / image.height)
        if scale < 1.0:
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = _shrink(image, size)
        if fit == "contain" and width and height and image.size != (width, height):
            transparent = fmt in _WITH_ALPHA
            canvas = Image.new(
                "RGBA" if transparent else "RGB",
                (width, height),
                (0, 0, 0, 0) if transparent else _JPEG_BACKGROUND,
            )
            offset = ((width - image.width) // 2, (height - image.height) // 2)
            layer = image.convert("RGBA") if transparent else _flatten(image).convert("RGB")
            canvas.paste(layer, offset, layer if transparent else None)
            image = canvas
    return _encode("rendition", fmt, image, quality=quality)
