"""What the image lifecycle is allowed: sizes, expiries, limits per owner, the trash's days."""

from __future__ import annotations

from dataclasses import dataclass

from image_service.imaging.inspect import InspectionLimits


@dataclass(frozen=True, slots=True)
class UploadPolicy:
    allowed_content_types: tuple[str, ...]
    max_upload_bytes: int
    max_multipart_bytes: int
    multipart_part_bytes: int  # when the client names no part size
    upload_url_expiry: int
    download_url_expiry: int
    inspection: InspectionLimits
    inspection_concurrency: int
    max_images_per_user: int
    max_bytes_per_user: int
    # Upload URLs are checked against a usage figure at most this old; completion is exact.
    usage_cache_seconds: float
    # Whether a callback_url may name loopback, link-local or private addresses.
    callbacks_to_private: bool = False
    # A DELETE moves an image to the trash for this many days; 0: deletes at once.
    trash_days: int = 0
    # Completions one user may have running at once (each spools its upload to disk).
    max_completions_per_user: int = 16
    # Multipart uploads one user may have open (pending) at once.
    max_open_multipart_per_user: int = 10
    # Imports one user may have being fetched at once.
    max_imports_per_user: int = 20
    # Whether processing keeps GPS in originals (else only a JPEG's is removed).
    keep_gps: bool = False
