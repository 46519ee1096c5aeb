"""What an uploaded file really is. Functions over a file (or bytes) the caller has; no network.

Completion runs :func:`inspect_image` (off the event loop) over the whole object, spooled to a
temporary file when large: memory stays bounded by the chunks read here and by the decoded
pixels, which the limits bound before any is decoded, whatever the file's size. The type comes
from magic numbers, never from the client; then the header's dimensions and frame count are
checked against the limits *before* any pixel is decoded; then every frame is decoded (a
truncated or corrupt file fails here); finally nothing may follow the image's own end marker
and no markup may hide inside it, so a file cannot be an image and an HTML page at once.
"""

from __future__ import annotations

import io
import os
import re
import struct
import warnings
from dataclasses import dataclass
from typing import IO, Any

import pillow_heif
from PIL import Image, ImageSequence, UnidentifiedImageError

from image_service.imaging.formats import ISOBMFF_CONTENT_TYPES, content_type_from_magic

# HEIC and HEIF through libheif (pillow-heif's wheel); AVIF is Pillow's own (libavif).
pillow_heif.register_heif_opener()

# The content types each Pillow format may be (HEIF is both HEIC's and generic HEIF's).
_PILLOW_FORMATS = {
    "JPEG": {"image/jpeg"},
    "PNG": {"image/png"},
    "GIF": {"image/gif"},
    "WEBP": {"image/webp"},
    "HEIF": {"image/heic", "image/heif"},
    "AVIF": {"image/avif"},
}


_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
# Enough of the file's start for every magic number and ftyp box we recognise.
_HEAD_BYTES = 4096
# The markup scan reads this much at a time, each read overlapping the last by a tag's length.
_SCAN_CHUNK_BYTES = 1024 * 1024
_SCAN_OVERLAP_BYTES = 64
# Markup a browser would act on if it ever sniffed the file as a page.
_MARKUP = re.compile(
    rb"<\s*(?:script|html|body|svg|iframe|object|embed|meta|link|style)[\s/>]|<!doctype|<\?php",
    re.IGNORECASE,
)


class ImageRejected(Exception):
    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}


@dataclass(frozen=True, slots=True)
class InspectionLimits:
    max_pixels: int  # per frame
    max_frames: int
    max_animation_pixels: int  # summed over all frames


@dataclass(frozen=True, slots=True)
class Inspection:
    content_type: str
    width: int
    height: int
    frames: int


def inspect_image(source: bytes | IO[bytes], declared: str, limits: InspectionLimits) -> Inspection:
    """The verified facts of an image (``source``: its bytes, or a seekable binary file), or
    ImageRejected with the reason."""
    file: IO[bytes] = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    file.seek(0)
    detected = content_type_from_magic(file.read(_HEAD_BYTES))
    if detected != declared:
        raise ImageRejected(
            "content_mismatch",
            "The uploaded bytes are not the declared image type.",
            {"declared": declared, "detected": detected},
        )
    try:
        with warnings.catch_warnings():
            # Pillow warns on large canvases before it refuses them; the limits below decide.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            file.seek(0)
            with Image.open(file) as image:
                inspection = _check_and_decode(image, declared, limits)
    except Image.DecompressionBombError:
        raise ImageRejected(
            "too_many_pixels", "The image has too many pixels.", {"max_pixels": limits.max_pixels}
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error):
        raise ImageRejected("corrupt_image", "The image is truncated or corrupt.") from None
    _check_nothing_trails(file, declared)
    if _carries_markup(file):
        raise ImageRejected(
            "embedded_markup", "The file carries HTML or script content inside the image."
        )
    return inspection


def _carries_markup(file: IO[bytes]) -> bool:
    file.seek(0)
    carried = b""
    while chunk := file.read(_SCAN_CHUNK_BYTES):
        window = carried + chunk
        if _MARKUP.search(window):
            return True
        carried = window[-_SCAN_OVERLAP_BYTES:]
    return False


def _check_and_decode(image: Image.Image, declared: str, limits: InspectionLimits) -> Inspection:
    if declared not in _PILLOW_FORMATS.get(image.format or "", set()):
        raise ImageRejected(
            "content_mismatch",
            "The uploaded bytes are not the declared image type.",
            {"declared": declared, "detected": image.format},
        )
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageRejected(
            "too_many_pixels",
            "The image has too many pixels.",
            {"width": width, "height": height, "max_pixels": limits.max_pixels},
        )
    frames = int(getattr(image, "n_frames", 1))
    if frames > limits.max_frames:
        raise ImageRejected(
            "too_many_frames",
            "The animation has too many frames.",
            {"frames": frames, "max_frames": limits.max_frames},
        )
    if frames * width * height > limits.max_animation_pixels:
        raise ImageRejected(
            "too_many_pixels",
            "The animation has too many pixels across its frames.",
            {"frames": frames, "max_animation_pixels": limits.max_animation_pixels},
        )
    # Bounded by the checks above: at most max_animation_pixels are ever decoded.
    for frame in ImageSequence.Iterator(image):
        frame.load()
    return Inspection(content_type=declared, width=width, height=height, frames=frames)


def _check_nothing_trails(file: IO[bytes], declared: str) -> None:
    """Each format has its own end; anything after it is a second file riding along."""
    length = file.seek(0, os.SEEK_END)
    if declared in ISOBMFF_CONTENT_TYPES:
        ends_cleanly = _boxes_fill(file, length)
    elif declared == "image/webp":  # the RIFF header states the exact length (padded to even)
        file.seek(4)
        riff_size = struct.unpack("<I", file.read(4))[0]
        ends_cleanly = length in {riff_size + 8, riff_size + 9}
    else:
        file.seek(max(0, length - _SCAN_CHUNK_BYTES))
        tail = file.read()
        if declared == "image/png":
            ends_cleanly = tail.endswith(_PNG_END)
        elif declared == "image/gif":
            ends_cleanly = tail.endswith(b"\x3b")
        else:  # image/jpeg
            # Some encoders pad after the end-of-image marker with zero bytes; nothing else.
            # (Padding longer than the tail read is refused: no encoder writes a megabyte.)
            ends_cleanly = tail.rstrip(b"\x00").endswith(b"\xff\xd9")
    if not ends_cleanly:
        raise ImageRejected("trailing_data", "The file continues after the end of the image.")


def _boxes_fill(file: IO[bytes], length: int) -> bool:
    """Whether the file's top-level ISO BMFF boxes (size, type, ...) end exactly at its end."""
    position = 0
    while position < length:
        if position + 8 > length:
            return False
        file.seek(position)
        header = file.read(16)
        (size,) = struct.unpack_from(">I", header)
        if size == 1:  # a 64-bit size follows the type
            if position + 16 > length:
                return False
            (size,) = struct.unpack_from(">Q", header, 8)
        elif size == 0:  # the last box: to the end of the file
            return True
        if size < 8:
            return False
        position += size
    return position == length
