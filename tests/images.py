"""Real image bytes made on the fly, and bodies that only pretend to be images."""

from __future__ import annotations

import io
import os
import struct

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


def heic(width: int = 64, height: int = 48) -> bytes:
    import image_service.imaging.inspect  # noqa: F401  # registers pillow-heif's opener

    return encode("HEIF", width, height)


def avif(width: int = 40, height: int = 30) -> bytes:
    return encode("AVIF", width, height)


def transparent_png(width: int = 64, height: int = 48, *, palette: bool = False) -> bytes:
    """Left half opaque red, right half fully transparent: as RGBA, or as a palette with tRNS."""
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    image.paste((220, 20, 20, 255), (0, 0, width // 2, height))
    if palette:
        image = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
        # The palette index of a transparent pixel becomes the tRNS entry.
        image.info["transparency"] = image.getpixel((width - 1, 0))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **({"transparency": image.info["transparency"]} if palette else {}))
    return buffer.getvalue()


# Display P3's primaries, adapted to the D50 white of ICC's profile connection space (the
# colorants of Apple's Display P3 profile); a 2.2 gamma stands in for its sRGB-like curve.
P3_TO_XYZ_D50 = ((0.5151, 0.2920, 0.1571), (0.2412, 0.6922, 0.0666), (-0.0011, 0.0419, 0.7841))
P3_GAMMA = 2.2


def display_p3_profile() -> bytes:
    """A minimal ICC v2 RGB display profile for Display P3 (matrix and curves), built here
    from the ICC specification: no profile file ships with this machine."""

    def s15(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ \x00\x00\x00\x00" + s15(x) + s15(y) + s15(z)

    def text_description(text: str) -> bytes:
        ascii_text = text.encode() + b"\x00"
        return (
            b"desc\x00\x00\x00\x00"
            + struct.pack(">I", len(ascii_text))
            + ascii_text
            + b"\x00" * 8  # no Unicode description
            + b"\x00" * 3
            + b"\x00" * 67  # no ScriptCode description
        )

    gamma = struct.pack(">H", round(P3_GAMMA * 256))  # u8Fixed8
    curve = b"curv\x00\x00\x00\x00" + struct.pack(">I", 1) + gamma
    columns = list(zip(*P3_TO_XYZ_D50, strict=True))
    tags = [
        (b"desc", text_description("Display P3 (test)")),
        (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", xyz(*columns[0])),
        (b"gXYZ", xyz(*columns[1])),
        (b"bXYZ", xyz(*columns[2])),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
        (b"cprt", b"text\x00\x00\x00\x00Public domain\x00"),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table = struct.pack(">I", len(tags))
    body = b""
    for signature, data in tags:
        padded = data + b"\x00" * (-len(data) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += padded
    size = offset + len(body)
    header = (
        struct.pack(">I", size)
        + b"lcms"
        + struct.pack(">I", 0x02100000)
        + b"mntrRGB XYZ "
        + struct.pack(">6H", 2026, 11, 30, 0, 0, 0)
        + b"acsp"
        + b"APPL"
        + b"\x00" * 4  # flags
        + b"\x00" * 8  # device manufacturer and model
        + b"\x00" * 8  # attributes
        + struct.pack(">I", 0)  # perceptual intent
        + s15(0.9642)
        + s15(1.0)
        + s15(0.8249)  # the PCS illuminant, D50
        + b"lcms"
    )
    header += b"\x00" * (128 - len(header))
    return header + table + body


def display_p3_jpeg(color: tuple[int, int, int], width: int = 64, height: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(
        buffer, "JPEG", quality=100, subsampling=0, icc_profile=display_p3_profile()
    )
    return buffer.getvalue()


def camera_jpeg(
    taken: str | None = "2024:07:14 18:30:05",
    *,
    offset: str | None = "+02:00",
    make: str = "Fujifilm",
    model: str = "X-T5",
    color: tuple[int, int, int] = (90, 120, 60),
) -> bytes:
    """A JPEG as a camera writes one: make, model, orientation, when (with its UTC offset),
    exposure, lens and position."""
    image = Image.new("RGB", (320, 240), color)
    exif = Image.Exif()
    exif[0x010F] = make
    exif[0x0110] = model
    exif[0x0112] = 1
    details = exif.get_ifd(0x8769)
    if taken is not None:
        details[0x9003] = taken
    if offset is not None:
        details[0x9011] = offset
    details[0x829A] = 1 / 250  # ExposureTime
    details[0x829D] = 2.8  # FNumber
    details[0x8827] = 400  # ISO
    details[0x920A] = 35.0  # FocalLength
    details[0xA433] = "Fujifilm"  # LensMake
    details[0xA434] = "XF35mmF1.4 R"  # LensModel
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", GPS_LATITUDE
    gps[3], gps[4] = "W", (3.0, 42.0, 0.0)
    gps[5], gps[6] = 0, 650.0
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85, exif=exif)
    return buffer.getvalue()
