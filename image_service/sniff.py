"""What an uploaded file really is, from its first bytes, whatever its declared content type.

Magic numbers decide the type; Pillow only reads the header for the dimensions (no pixel decode).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

# How many leading bytes completion reads to sniff: a JPEG's frame header (which holds the
# dimensions) follows its EXIF and ICC segments, which can reach ~128 KiB between them.
SNIFF_BYTES = 256 * 1024

_PILLOW_FORMATS = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
}

SNIFFABLE_CONTENT_TYPES = frozenset(_PILLOW_FORMATS.values())


def content_type_from_magic(head: bytes) -> str | None:
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


@dataclass(frozen=True, slots=True)
class SniffResult:
    content_type: str | None
    width: int | None = None
    height: int | None = None


def sniff(head: bytes) -> SniffResult:
    """The type by magic number and, when the header is readable, the dimensions."""
    content_type = content_type_from_magic(head)
    if content_type is None:
        return SniffResult(None)
    try:
        with warnings.catch_warnings():
            # A header claiming a huge canvas warns before it errors; size limits are checked by
            # the caller, so the warning is not an error here.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(head)) as image:
                if _PILLOW_FORMATS.get(image.format or "") != content_type:
                    return SniffResult(None)
                width, height = image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        # The magic matched but the header is cut short or odd: the type stands, size unknown.
        return SniffResult(content_type)
    return SniffResult(content_type, width, height)
