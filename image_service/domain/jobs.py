"""The queue's messages the domain makes: process an image, or bring a ready one up to date."""

from __future__ import annotations

from image_service.domain.models import ImageRecord

# Reprocessing jobs waiting on the queue at most, ahead of any fresh upload's
# (`image-service reprocess --backlog`).
DEFAULT_REPROCESS_BACKLOG = 10


def process_job(record: ImageRecord) -> dict[str, str]:
    return {"type": "process", "user_id": record.user_id, "image_id": record.image_id}


def reprocess_job(
    record: ImageRecord, *, fingerprint: str, force: bool = False
) -> dict[str, str | bool]:
    """A ready image brought up to the processing settings ``fingerprint`` names (a worker on
    other settings defers it, domain/workers.py); ``force``: even if it is."""
    job: dict[str, str | bool] = {
        "type": "reprocess",
        "user_id": record.user_id,
        "image_id": record.image_id,
        "fingerprint": fingerprint,
    }
    if force:
        job["force"] = True
    return job
