"""Where an image's objects live in the bucket: one prefix per owner, per image, per purpose.

- ``incoming/<owner>/<id>``: where the client uploads; never served.
- ``images/<owner>/<id>/``: what is served, the verified original and its variants.
- ``quarantine/<owner>/<id>/original``: a flagged original, kept for review, never served.
"""

from __future__ import annotations

from urllib.parse import quote

from image_service.domain.models import ImageRecord


def key_prefix(user_id: str) -> str:
    """A user's S3 prefix: the id percent-encoded, so it can never add a level or escape one."""
    return quote(user_id, safe="").replace(".", "%2E")


def incoming_key(record: ImageRecord) -> str:
    """Where the client uploads. Never served: completion copies what it verified elsewhere."""
    return f"incoming/{key_prefix(record.user_id)}/{record.image_id}"


def image_prefix(user_id: str, image_id: str) -> str:
    """Everything served for one image (original and variants) lives under this prefix."""
    return f"images/{key_prefix(user_id)}/{image_id}/"


def original_key(user_id: str, image_id: str) -> str:
    return image_prefix(user_id, image_id) + "original"


def quarantine_key(record: ImageRecord) -> str:
    """Where a flagged original is kept for review: outside every prefix that is ever served."""
    return f"quarantine/{key_prefix(record.user_id)}/{record.image_id}/original"
