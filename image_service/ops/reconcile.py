"""Finding (and, when asked, repairing) what a crash or an outage can leave behind: records
whose originals are gone, and objects that no record accounts for.

It runs beside live traffic, so it never trusts a view older than the moment it acts on:

- Nothing younger than the grace period is judged: an object by its ``LastModified``, a record
  by its last change. Uploads, completions, copies and deletes in flight all finish well within
  it (an upload URL lives an hour at most), so what is young may simply be under way.
- Every verdict is taken on a fresh look: an object is an orphan only if a consistent read of
  its image's record, made after the object was listed, finds none; a record misses its
  original only if a consistent re-read finds it unchanged and the original still absent.
- A repair is conditional: a record is dropped only at the revision that was judged.
- It streams: one page of the listing (at most 1,000 keys) and one page of the table scan are
  held at a time, and findings are handed out as they are made, so memory stays bounded
  however many objects and records there are.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import unquote

from image_service.domain.layout import image_prefix, incoming_key, quarantine_key
from image_service.domain.models import ImageRecord, ImageStatus
from image_service.domain.ports import utc_now
from image_service.storage.dynamo import ImageRepository
from image_service.storage.s3 import ObjectStore

log = logging.getLogger(__name__)

# Statuses whose original must exist under images/.
_HAS_ORIGINAL = frozenset({ImageStatus.PROCESSING, ImageStatus.READY})
_PREFIXES = ("images/", "incoming/", "quarantine/")


@dataclass(frozen=True, slots=True)
class RecordWithoutObject:
    user_id: str
    image_id: str


@dataclass(frozen=True, slots=True)
class ObjectWithoutRecord:
    key: str


Finding = RecordWithoutObject | ObjectWithoutRecord


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
    grace: timedelta,
    now: datetime | None = None,
) -> AsyncIterator[Finding]:
    """Yields each inconsistency as it is confirmed; with ``fix``, repairs it first. ``grace``:
    what changed more recently may be under way (`image-service reconcile` defaults to an hour,
    the longest an upload URL lives)."""
    cutoff = (now or utc_now()) - grace
    async for record in repository.all_images():
        if record.status in _HAS_ORIGINAL and record.updated_at < cutoff:
            confirmed = await _missing_original(store, repository, record)
            if confirmed is not None:
                if fix:
                    await _drop(store, repository, confirmed)
                yield RecordWithoutObject(record.user_id, record.image_id)

    # The original service's images keep their objects at its keys until `image-service
    # migrate` takes them in: theirs, not orphans. (Their number only shrinks, to none.)
    legacy_keys = {legacy.s3_key async for legacy in repository.legacy_images()}
    for prefix in _PREFIXES:
        async for page in store.listing(prefix):
            orphans = []
            owners: dict[tuple[str, str], bool] = {}  # image -> has a record, per page
            for key, last_modified in page:
                if last_modified >= cutoff or key in legacy_keys:
                    continue
                image = _image_of(key)
                if image is not None and image not in owners:
                    # Read after the listing, consistently: a record written before the object
                    # (as every record is) is seen.
                    owners[image] = await repository.exists(*image)
                if image is None or not owners[image]:
                    orphans.append(key)
            if fix:
                await store.delete(orphans)
            for key in orphans:
                yield ObjectWithoutRecord(key)


async def _missing_original(
    store: ObjectStore, repository: ImageRepository, record: ImageRecord
) -> ImageRecord | None:
    """The record, re-read, if it still names an original that is not there."""
    if await store.head(record.s3_key) is not None:
        return None
    current = await repository.get(record.user_id, record.image_id)
    if current is None or current.revision != record.revision:
        return None  # deleted or changed since the scan read it: not judged on a stale view
    if await store.head(current.s3_key) is not None:
        return None
    return current


async def _drop(store: ObjectStore, repository: ImageRepository, record: ImageRecord) -> None:
    """Nothing of the image can be served: its record goes (only at the revision judged),
    then whatever is left of its objects."""
    if not await repository.delete(record, unchanged_only=True):
        return
    log.warning("reconcile dropped %s/%s: its original is gone", record.user_id, record.image_id)
    leftovers = await store.keys_under(image_prefix(record.user_id, record.image_id))
    await store.delete([*leftovers, incoming_key(record), quarantine_key(record)])
