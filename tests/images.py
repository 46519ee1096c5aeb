"""Real image bytes made on the fly, and bodies that only pretend to be images."""

from __future__ import annotations

import io
import os

from PIL import Image


def encode(
    fmt: str, width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 30, 30)
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format=fmt)
    return buffer.getvalue()


def jpeg(width: int = 64, height: int = 48) -> bytes:
    return encode("JPEG", width, height)


def png(width: int = 64, height: int = 48) -> bytes:
    return encode("PNG", width, height)


def gif(width: int = 32, height: int = 32) -> bytes:
    return encode("GIF", width, height)


def webp(width: int = 40, height: int = 30) -> bytes:
    return encode("WEBP", width, height)


HTML = b"<!doctype html><html><script>alert(document.cookie)</script></html>"


def noisy_png(width: int = 64, height: int = 64) -> bytes:
    """A PNG that does not compress: its size is about 3 bytes a pixel."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(buffer, "PNG")
    return buffer.getvalue()
