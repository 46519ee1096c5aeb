"""A photo's own metadata, read from its EXIF: when it was taken, with which camera and lens,
its exposure, its orientation and (only when the service keeps it) where.

EXIF is whatever the uploader's file says, so every value is treated as hostile: text is
stripped of control characters and lone surrogates and cut to a length, numbers must be finite
and plausible, dates must parse. Anything else is left out, never an error: a photo with odd
metadata is still a photo.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from PIL import Image

_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825
_MAKE, _MODEL, _ORIENTATION, _DATETIME = 0x010F, 0x0110, 0x0112, 0x0132
_EXPOSURE_TIME, _F_NUMBER, _ISO = 0x829A, 0x829D, 0x8827
_TAKEN, _TAKEN_OFFSET, _FOCAL_LENGTH = 0x9003, 0x9011, 0x920A
_LENS_MAKE, _LENS_MODEL = 0xA433, 0xA434
_GPS_LATITUDE_REF, _GPS_LATITUDE, _GPS_LONGITUDE_REF, _GPS_LONGITUDE = 1, 2, 3, 4
_GPS_ALTITUDE_REF, _GPS_ALTITUDE = 5, 6

MAX_TEXT = 100


@dataclass(frozen=True, slots=True)
class GpsPosition:
    latitude: float
    longitude: float
    altitude: float | None = None  # metres; negative below sea level


@dataclass(frozen=True, slots=True)
class PhotoMetadata:
    """What a photo's EXIF says about it (read below); each field only when known."""

    taken_at: datetime | None = None  # UTC
    camera: str | None = None  # make and model
    lens: str | None = None
    f_number: float | None = None
    exposure_time: float | None = None  # seconds
    iso: int | None = None
    focal_length: float | None = None  # millimetres
    orientation: int | None = None  # EXIF 1-8 (the variants are already upright)
    gps: GpsPosition | None = None  # only when IMAGE_SERVICE_KEEP_GPS; shown to the owner only


_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")


def photo_metadata(exif: Image.Exif, *, keep_gps: bool) -> PhotoMetadata | None:
    """What the EXIF says, or None when it says nothing this service keeps."""
    details = exif.get_ifd(_EXIF_IFD)
    make, model = _text(exif.get(_MAKE)), _text(exif.get(_MODEL))
    camera = model if make is None or (model or "").lower().startswith(make.lower()) else None
    if camera is None and (make or model):
        camera = " ".join(part for part in (make, model) if part)
    lens = _text(details.get(_LENS_MODEL))
    lens_make = _text(details.get(_LENS_MAKE))
    if lens and lens_make and not lens.lower().startswith(lens_make.lower()):
        lens = f"{lens_make} {lens}"
    orientation = _number(exif.get(_ORIENTATION), 1, 8)
    photo = PhotoMetadata(
        taken_at=_taken_at(details.get(_TAKEN) or exif.get(_DATETIME), details.get(_TAKEN_OFFSET)),
        camera=camera,
        lens=lens,
        f_number=_number(details.get(_F_NUMBER), 0.1, 1000),
        exposure_time=_number(details.get(_EXPOSURE_TIME), 1e-6, 100_000),
        iso=_integer(details.get(_ISO), 1, 10_000_000),
        focal_length=_number(details.get(_FOCAL_LENGTH), 0.1, 100_000),
        orientation=None if orientation is None else int(orientation),
        gps=_gps(exif.get_ifd(_GPS_IFD)) if keep_gps else None,
    )
    return None if photo == PhotoMetadata() else photo


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    cleaned = " ".join(_UNPRINTABLE.sub(" ", value).split())[:MAX_TEXT]
    return cleaned or None


def _number(value: Any, low: float, high: float) -> float | None:
    if isinstance(value, tuple | list):  # some writers repeat a value
        value = value[0] if value else None
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not math.isfinite(number) or not low <= number <= high:
        return None
    return round(number, 6)


def _integer(value: Any, low: int, high: int) -> int | None:
    number = _number(value, low, high)
    return None if number is None else int(number)


def _taken_at(value: Any, offset: Any) -> datetime | None:
    """EXIF's ``YYYY:MM:DD HH:MM:SS`` local time, at its offset when one is recorded; a camera
    that records none is taken to be on UTC (so that the order of its photos holds)."""
    text = _text(value)
    if text is None:
        return None
    try:
        moment = datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    zone: timezone = UTC
    match = _OFFSET.match(_text(offset) or "")
    if match:
        sign = -1 if match.group(1) == "-" else 1
        hours, minutes = int(match.group(2)), int(match.group(3))
        if hours <= 14 and minutes < 60:
            zone = timezone(sign * timedelta(hours=hours, minutes=minutes))
    if not 1900 <= moment.year <= 2200:
        return None
    return moment.replace(tzinfo=zone).astimezone(UTC)


def _gps(gps: dict[int, Any]) -> GpsPosition | None:
    latitude = _degrees(gps.get(_GPS_LATITUDE), gps.get(_GPS_LATITUDE_REF), "S", 90)
    longitude = _degrees(gps.get(_GPS_LONGITUDE), gps.get(_GPS_LONGITUDE_REF), "W", 180)
    if latitude is None or longitude is None:
        return None
    altitude = _number(gps.get(_GPS_ALTITUDE), 0, 100_000)
    if altitude is not None and gps.get(_GPS_ALTITUDE_REF) in (1, b"\x01"):
        altitude = -altitude
    return GpsPosition(latitude=latitude, longitude=longitude, altitude=altitude)


def _degrees(value: Any, reference: Any, negative: str, limit: float) -> float | None:
    if not isinstance(value, tuple | list) or len(value) != 3:
        return None
    parts = [_number(part, 0, 360) for part in value]
    if any(part is None for part in parts):
        return None
    degrees, minutes, seconds = (float(part or 0) for part in parts)
    result = degrees + minutes / 60 + seconds / 3600
    if _text(reference) == negative:
        result = -result
    return round(result, 7) if -limit <= result <= limit else None
