"""Finding (and, when asked, repairing) what a crash or an outage can leave behind: records
whose objects are gone, and objects that no record accounts for."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import unquote

from image_service.domain.images import image_prefix, incoming_key, utc_now
from image_service.models import ImageStatus
from image_service.storage.dynamo import ImageRepository
from image_service.storage.s3 import ObjectStore

log = logging.getLogger(__name__)

# Uploads younger than this may still be completed: they are nobody's orphans yet.
UPLOAD_GRACE = timedelta(hours=1)
# Statuses whose original must exist under images/.
_HAS_ORIGINAL = {ImageStatus.PROCESSING, ImageStatus.READY}


@dataclass
class ReconcileReport:
    records_without_objects: list[tuple[str, str]] = field(default_factory=list)
    objects_without_records: list[str] = field(default_factory=list)
    fixed: bool = False

    @property
    def clean(self) -> bool:
        return not self.records_without_objects and not self.objects_without_records


def _image_of(key: str) -> tuple[str, str] | None:
    """(user, image id) of images/<user>/<id>/..., incoming/<user>/<id> or quarantine/..."""
    parts = key.split("/")
    if len(parts) >= 3 and parts[0] in {"images", "incoming", "quarantine"}:
        return unquote(parts[1]), parts[2]
    return None


async def reconcile(
    store: ObjectStore,
    repository: ImageRepository,
    *,
    fix: bool,
    now: datetime | None = None,
) -> ReconcileReport:
    now = now or utc_now()
    report = ReconcileReport(fixed=fix)
    known: dict[tuple[str, str], ImageStatus] = {}
    missing_originals = []
    async for record in repository.all_images():
        known[(record.user_id, record.image_id)] = record.status
        if record.status in _HAS_ORIGINAL and await store.head(record.s3_key) is None:
            report.records_without_objects.append((record.user_id, record.image_id))
            missing_originals.append(record)

    # The original service's images keep their objects at its keys until `image-service
    # migrate` takes them in: theirs, not orphans, whatever the layout.
    legacy_keys = {legacy.s3_key async for legacy in repository.legacy_images()}

    for prefix in ("images/", "incoming/", "quarantine/"):
        for key in await store.keys_under(prefix):
            owner = _image_of(key)
            if (owner is not None and owner in known) or key in legacy_keys:
                continue
            if prefix == "incoming/" and await _recent(store, key, now):
                continue
            report.objects_without_records.append(key)

    if fix:
        await store.delete(report.objects_without_records)
        for record in missing_originals:
            # Nothing can be served: drop what is left under its prefix, then the record.
            await store.delete(
                await store.keys_under(image_prefix(record.user_id, record.image_id))
            )
            await store.delete([incoming_key(record)])
            await repository.delete(record)
        log.info(
            "reconcile fixed %d records and %d objects",
            len(missing_originals),
            len(report.objects_without_records),
        )
    return report


async def _recent(store: ObjectStore, key: str, now: datetime) -> bool:
    stored = await store.head(key)
    return stored is not None and now - stored.last_modified < UPLOAD_GRACE
