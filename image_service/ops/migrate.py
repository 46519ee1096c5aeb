"""Taking in the images the original service stored (``image-service migrate``).

The original service wrote one item per image (owner, id, key, content type, upload time, tags,
description) and kept the bytes at ``images/<image id>``, outside any per-user prefix. Nothing
here can serve, list or protect such an image: it has no status, no index attributes, was
never verified, and its key is not its owner's. Each one is taken in as if it had just been
uploaded, through the same completion every upload goes through, keeping its id (clients
hold it), upload time, tags and description; its old object is deleted once the image is
safe under its owner's prefix.

Safe to run again, and against a live service: an image is taken in by one conditional write
(two migrations never both adopt it), and a run cut short is finished by the next, which
completes the uploads left uncompleted (what S3's own upload event does when it is on).

It also brings this service's own images up to date: images verified before de-duplication
existed get their digest item (``POST /images/check``), each by a write conditional on the
revision it read, re-read and re-applied if the image changed meanwhile.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

from image_service.domain.completion import Completion
from image_service.domain.errors import Conflict, QuotaExceeded, UploadRejected
from image_service.domain.layout import incoming_key, original_key
from image_service.domain.models import (
    MAX_DESCRIPTION_LENGTH,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    ImageRecord,
    ImageStatus,
    LegacyImage,
    normalize_tags,
)
from image_service.domain.ports import StoredObject, utc_now
from image_service.logs import image_event
from image_service.storage.dynamo import ImageRepository
from image_service.storage.s3 import ObjectStore

log = logging.getLogger(__name__)

ImageName = tuple[str, str]  # (owner, image id)


@dataclass
class MigrationReport:
    # Taken in (or, in a dry run, that would be).
    migrated: list[ImageName] = field(default_factory=list)
    # Left as they were, or refused by completion: (owner, image id, why).
    refused: list[tuple[str, str, str]] = field(default_factory=list)
    # Uploads an earlier run (or a client) left uncompleted, completed by this one.
    resumed: list[ImageName] = field(default_factory=list)
    # Images verified before digests were indexed, indexed now (or, in a dry run, to index).
    indexed: list[ImageName] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.refused


async def migrate(
    completion: Completion, store: ObjectStore, repository: ImageRepository, *, apply: bool
) -> MigrationReport:
    report = MigrationReport()
    async for legacy in repository.legacy_images():
        name = (legacy.user_id, legacy.image_id)
        problem = legacy_problem(completion, legacy)
        stored = None if problem else await store.head(legacy.s3_key)
        if stored is None:
            report.refused.append((*name, problem or "object_missing"))
            continue
        if not apply:
            report.migrated.append(name)
            continue
        try:
            adopted = await adopt_legacy(completion, store, repository, legacy, stored)
        except (UploadRejected, QuotaExceeded, Conflict) as refusal:
            # Refused as an upload of it would be; its old object stays, for a person to judge.
            report.refused.append((*name, refusal.code))
            continue
        if adopted is None:  # another migration took it in
            continue
        await store.delete([legacy.s3_key])
        report.migrated.append(name)
        log.info("image migrated", extra=image_event("image_migrated", *name))
    if apply:
        await _complete_left_uploads(completion, store, repository, report)
    await _index_digests(repository, report, apply=apply)
    return report


async def _index_digests(
    repository: ImageRepository, report: MigrationReport, *, apply: bool
) -> None:
    async for record in repository.all_images():
        if record.uploaded_sha256 is not None or record.sha256 is None:
            continue
        if record.status not in {ImageStatus.PROCESSING, ImageStatus.READY}:
            continue
        if not apply or await repository.index_digest(record):
            report.indexed.append((record.user_id, record.image_id))


async def _complete_left_uploads(
    completion: Completion, store: ObjectStore, repository: ImageRepository, report: MigrationReport
) -> None:
    """A run cut short between taking an image in and completing it leaves a pending record
    whose bytes are in place: complete it now, like any upload whose client went away."""
    migrated = set(report.migrated)
    async for record in repository.all_images():
        name = (record.user_id, record.image_id)
        if record.status is not ImageStatus.PENDING or name in migrated:
            continue
        if await store.head(incoming_key(record)) is None:
            continue
        try:
            await completion.complete_for(*name)
        except (UploadRejected, QuotaExceeded, Conflict) as refusal:
            report.refused.append((*name, refusal.code))
            continue
        report.resumed.append(name)


def legacy_problem(completion: Completion, legacy: LegacyImage) -> str | None:
    """Why an image the original service stored cannot be taken in as it is (a code), or
    None. Such an image is left exactly as it was, for its owner or an operator to fix:
    nothing is truncated or guessed."""
    try:
        if str(uuid.UUID(legacy.image_id)) != legacy.image_id:
            return "image_id_not_a_uuid"
    except ValueError:
        return "image_id_not_a_uuid"
    if not completion.accepts(legacy.content_type):
        return "unsupported_content_type"
    tags = normalize_tags(legacy.tags)
    if len(tags) > MAX_TAGS:
        return "too_many_tags"
    if any(len(tag) > MAX_TAG_LENGTH for tag in tags):
        return "tag_too_long"
    if len(legacy.description) > MAX_DESCRIPTION_LENGTH:
        return "description_too_long"
    return None


async def adopt_legacy(
    completion: Completion,
    store: ObjectStore,
    repository: ImageRepository,
    legacy: LegacyImage,
    stored: StoredObject,
) -> ImageRecord | None:
    """Takes in an image the original service stored, as if it had just been uploaded: its
    bytes are copied to where the upload would have arrived, its item becomes a pending
    record keeping its id, upload time, tags and description, and it is completed like
    any upload (verified, counted against the quota, processed). None if another
    migration took it first; raises UploadRejected when completion refuses what it is."""
    record = ImageRecord(
        user_id=legacy.user_id,
        image_id=legacy.image_id,
        s3_key=original_key(legacy.user_id, legacy.image_id),
        content_type=legacy.content_type,
        status=ImageStatus.PENDING,
        upload_time=legacy.upload_time or stored.last_modified,
        updated_at=utc_now(),
        tags=normalize_tags(legacy.tags),
        description=legacy.description,
    )
    await store.copy(
        legacy.s3_key, incoming_key(record), etag=stored.etag, content_type=record.content_type
    )
    if await repository.adopt_legacy(record) is None:
        return None
    return await completion.complete_for(record.user_id, record.image_id)
