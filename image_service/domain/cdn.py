"""What a CDN in front of rendition URLs must forget, and when.

Rendition URLs (``/r/<owner>/<image>/<edition>/...``) are immutable while they live: new bytes
or a new focal point mean a new edition, so new URLs. What a CDN may still hold is an image
that should no longer be served at all (trashed, deleted, quarantined) or an edition that is
no longer the image's (reprocessed, a new focal point). Each such change owes, in its own
transaction (the outbox), one purge job for the image: every path under its rendition prefix,
one wildcard (CloudFront bills a wildcard as one path, and an image's URLs cannot be listed:
their expiry and signature are in them). The worker sends it (``storage/cdn.py``); a CDN other
than CloudFront hears it as the operator's ``cdn.purge`` webhook.
"""

from __future__ import annotations

import base64
import time
from typing import Any

# The job's type on the queue.
PURGE_JOB = "cdn_purge"
# The operator's webhook event, when IMAGE_SERVICE_WEBHOOK_CDN_PURGE is on.
PURGE_EVENT = "cdn.purge"


def owner_segment(owner: str) -> str:
    """The owner as rendition URLs spell it: unpadded base64url of its UTF-8."""
    return base64.urlsafe_b64encode(owner.encode()).rstrip(b"=").decode("ascii")


def rendition_paths(owner: str, image_id: str) -> list[str]:
    """Every rendition URL of the image, whatever its edition, size or expiry; nothing else."""
    return [f"/r/{owner_segment(owner)}/{image_id}/*"]


def purge_job(purge_id: str, owner: str, image_id: str, reason: str) -> dict[str, Any]:
    """A purge for the worker. ``purge_id`` is the change's: CloudFront takes it as the
    invalidation's CallerReference, so a job delivered twice is one invalidation."""
    return {
        "type": PURGE_JOB,
        "id": purge_id,
        "owner": owner,
        "image_id": image_id,
        "paths": rendition_paths(owner, image_id),
        "reason": reason,
        "queued_at": time.time(),
    }
