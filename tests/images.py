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


def noisy(fmt: str, width: int = 128, height: int = 96) -> bytes:
    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(buffer, fmt)
    return buffer.getvalue()


def jpeg_with_comment(comment: bytes) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 20, 30)).save(buffer, "JPEG", comment=comment)
    return buffer.getvalue()


def animated_gif(frames: int, width: int = 16, height: int = 16) -> bytes:
    # Every frame a different colour: Pillow merges identical consecutive frames.
    images = [
        Image.new("RGB", (width, height), ((index * 37) % 256, (index * 91) % 256, index % 256))
        for index in range(frames)
    ]
    buffer = io.BytesIO()
    images[0].save(buffer, "GIF", save_all=True, append_images=images[1:], duration=40, loop=0)
    return buffer.getvalue()


def bilevel_png(width: int, height: int) -> bytes:
    """A huge canvas in a few kilobytes: the shape of a decompression bomb."""
    buffer = io.BytesIO()
    Image.new("1", (width, height)).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><circle r="10"/></svg>'
SCRIPT = b"alert(document.cookie)"


GPS_LATITUDE = (52.0, 31.0, 12.34)


def jpeg_with_orientation_and_gps(
    width: int = 300, height: int = 200, orientation: int = 6
) -> bytes:
    """A camera-like JPEG: EXIF orientation (6 = rotate 90° clockwise to display) and GPS."""
    image = Image.new("RGB", (width, height), (200, 40, 40))
    image.paste((40, 40, 200), (0, 0, width // 3, height))  # a blue band on the stored left
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    exif[0x010F] = "ExampleCam"  # Make
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = GPS_LATITUDE
    gps[3] = "E"
    gps[4] = (13.0, 24.0, 0.0)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, exif=exif)
    return buffer.getvalue()
