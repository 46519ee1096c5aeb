"""The image formats this service takes: their magic numbers and file name extensions. Pure and
dependency-free, so that the client and the settings can know them without Pillow."""

from __future__ import annotations

# The file name extension of each type this service stores: downloads are named with it.
FILE_EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/webp": ".webp",
}
SNIFFABLE_CONTENT_TYPES = frozenset(FILE_EXTENSIONS)


def content_type_from_magic(head: bytes) -> str | None:
    """The type the first bytes of a file announce, whatever anyone declared."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None
