"""The JSON of an image and of a page of images, written directly: the hot path of every read.

``ImageSchema`` and ``ImagePageSchema`` stay the contract and the documentation; a marshmallow
dump walks every field of every record through its field objects, several times the cost of
this. ``tests/unit/test_views.py`` proves these equal to ``schema.dump`` on generated records.
"""

from __future__ import annotations

from typing import Any

from image_service.models import ImagePage, ImageRecord, format_timestamp


def image_view(record: ImageRecord) -> dict[str, Any]:
    """``ImageSchema().dump(record)``."""
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
        "placeholder": record.placeholder,
        "thumbhash": record.thumbhash,
        "upload_time": format_timestamp(record.upload_time),
        "updated_at": format_timestamp(record.updated_at),
    }


def page_view(page: ImagePage) -> dict[str, Any]:
    """``ImagePageSchema().dump(page)``."""
    return {"items": [image_view(record) for record in page.items], "next_cursor": page.next_cursor}
