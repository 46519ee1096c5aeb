"""The JSON of an image and of a page of images, written directly: the hot path of every read.

``ImageSchema`` and ``ImagePageSchema`` stay the contract and the documentation; a marshmallow
dump walks every field of every record through its field objects, several times the cost of
this. ``tests/unit/test_views.py`` proves these equal to ``schema.dump`` on generated records.
"""

from __future__ import annotations

from typing import Any

from image_service.domain.models import ImagePage, ImageRecord, format_timestamp
from image_service.imaging.exif import PhotoMetadata


def photo_view(photo: PhotoMetadata | None, *, gps: bool = True) -> dict[str, Any] | None:
    """``PhotoSchema().dump(photo)``; ``gps=False`` leaves the position out (for anyone but
    the owner)."""
    if photo is None:
        return None
    position = photo.gps if gps else None
    return {
        "taken_at": None if photo.taken_at is None else format_timestamp(photo.taken_at),
        "camera": photo.camera,
        "lens": photo.lens,
        "f_number": photo.f_number,
        "exposure_time": photo.exposure_time,
        "iso": photo.iso,
        "focal_length": photo.focal_length,
        "orientation": photo.orientation,
        "gps": None
        if position is None
        else {
            "latitude": position.latitude,
            "longitude": position.longitude,
            "altitude": position.altitude,
        },
    }


def image_view(record: ImageRecord, *, gps: bool = True) -> dict[str, Any]:
    """``ImageSchema().dump(record)``; ``gps=False`` without the photo's position."""
    return {
        "image_id": record.image_id,
        "user_id": record.user_id,
        "status": record.status.value,
        "content_type": record.content_type,
        "size": record.size,
        "width": record.width,
        "height": record.height,
        "sha256": record.sha256,
        "tags": list(record.tags),
        "description": record.description,
        "filename": record.filename,
        "variants": [
            {
                "name": variant.name,
                "format": variant.format,
                "content_type": variant.content_type,
                "width": variant.width,
                "height": variant.height,
                "size": variant.size,
            }
            for variant in record.variants
        ],
        "photo": photo_view(record.photo, gps=gps),
        "placeholder": record.placeholder,
        "thumbhash": record.thumbhash,
        "focal": None if record.focal is None else {"x": record.focal.x, "y": record.focal.y},
        "reason": record.rejection_reason,
        "source_url": record.source_url,
        "upload_time": format_timestamp(record.upload_time),
        "updated_at": format_timestamp(record.updated_at),
    }


def page_view(page: ImagePage, *, gps: bool = True) -> dict[str, Any]:
    """``ImagePageSchema().dump(page)``."""
    return {
        "items": [image_view(record, gps=gps) for record in page.items],
        "next_cursor": page.next_cursor,
    }
