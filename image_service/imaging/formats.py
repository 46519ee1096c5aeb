"""The image formats this service takes: their magic numbers and file name extensions. Pure and
dependency-free, so that the client and the settings can know them without Pillow."""

from __future__ import annotations

import struct

# The file name extension of each type this service stores: downloads are named with it.
FILE_EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/heic": ".heic",  # iPhone photos: HEIF holding HEVC-coded images
    "image/heif": ".heif",  # HEIF of another codec (or none named)
    "image/avif": ".avif",  # HEIF holding AV1-coded images
}
SNIFFABLE_CONTENT_TYPES = frozenset(FILE_EXTENSIONS)
# The ISO base media file format: a file of boxes, the first of them `ftyp`.
ISOBMFF_CONTENT_TYPES = frozenset({"image/heic", "image/heif", "image/avif"})

# `ftyp` brands (ISO/IEC 23008-12, AV1 Image File Format): AVIF's first, since an AVIF file
# also names the generic HEIF brands (mif1, msf1), as may a HEIC file.
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"})
_HEIF_BRANDS = frozenset({b"mif1", b"msf1", b"mif2"})


def ftyp_brands(head: bytes) -> list[bytes]:
    """The major and compatible brands of an ISO BMFF file's leading `ftyp` box; none if the
    file does not start with one."""
    if len(head) < 16 or head[4:8] != b"ftyp":
        return []
    (size,) = struct.unpack_from(">I", head, 0)
    if size < 16 or size % 4:
        return []
    brands = [head[8:12]]  # major brand; then the minor version (4 bytes), then compatible
    # A head cut short (a client sniffs the first bytes only) still names the brands it holds.
    end = min(size, len(head) - len(head) % 4)
    brands += [head[offset : offset + 4] for offset in range(16, end, 4)]
    return brands


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
    brands = set(ftyp_brands(head))
    if brands & _AVIF_BRANDS:
        return "image/avif"
    if brands & _HEIC_BRANDS:
        return "image/heic"
    if brands & _HEIF_BRANDS:
        return "image/heif"
    return None
