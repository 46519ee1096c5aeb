"""The image records' writes, and the reads they are made from.

Writes are optimistic: each is a transaction of named writes (the image, its usage, its tag
copies, its digest) conditional on the ``revision`` its writer read, and re-applied on a fresh
read when another writer got there first, so the copies never drift from their image. The
transitions (publish, trash, restore, delete...) are changes applied that way."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from enum import Enum
from typing import Any

from botocore.exceptions import ClientError

from image_service.domain.errors import AlbumGone, BackendUnavailable, Conflict, QuotaExceeded
from image_service.domain.models import (
    FocalPoint,
    ImageRecord,
    ImageStatus,
    Keep,
    Usage,
    edited_tags,
)
from image_service.domain.ports import Owed
from image_service.storage.dynamo.batching import BATCH_WRITE_SIZE
from image_service.storage.dynamo.codec import (
    BACKEND,
    DIGEST_IMAGES,
    USAGE_ID,
    Item,
    album_id_key,
    digest_id,
    feed_item,
    from_item,
    indexed_digest,
    indexed_tags,
    item_key,
    kept_job_item,
    membership_item,
    number_value,
    tag_copies,
    tag_copy_id,
    to_item,
)
from image_service.storage.dynamo.table import Table
from image_service.storage.errors import backend_errors, error_code

# Writers that lose a race re-read and re-apply their change; this many times, then 409.
_WRITE_ATTEMPTS = 8
# DynamoDB's most keys in one BatchGetItem, and how often its unprocessed keys are asked again.
BATCH_GET_SIZE = 100
_BATCH_GET_ATTEMPTS = 5


# One write of a transaction, by name: its outcome is looked up by name, never by position.
NamedWrite = tuple[str, dict[str, Any]]
IMAGE = "image"  # the image item itself, conditional on the revision its writer read
USAGE = "usage"  # its owner's usage item, conditional on the room the quota leaves
ALBUM = "album"  # an album the image joins, which must still exist


class _Refused(Exception):
    """A write's condition failed for a reason other than a concurrent writer."""

    def __init__(self, reasons: dict[str, str]) -> None:
        super().__init__(reasons)
        self.reasons = reasons


class _Delete(Enum):
    DELETE = "delete"


# What a change makes of the stored image: this record, no image, or None to leave it alone.
Change = Callable[[ImageRecord], "ImageRecord | _Delete | None"]


class ImageRecords(Table):
    async def get(self, user_id: str, image_id: str) -> ImageRecord | None:
        item = await self._read_item(user_id, image_id)
        if item is None or "status" not in item:
            # Absent, or the original service's item: not an image here until it is migrated.
            return None
        return from_item(item)

    async def exists(self, user_id: str, image_id: str) -> bool:
        """Whether any item (an image of any status, or the original service's) has this key."""
        return await self._read_item(user_id, image_id, ProjectionExpression="image_id") is not None

    # -- usage: one item per user, changed in the same transaction as the image it counts ------

    async def usage(self, user_id: str) -> Usage:
        item = await self._read_item(user_id, USAGE_ID) or {}
        return Usage(
            images=int(item.get("images", {}).get("N", 0)),
            bytes=int(item.get("bytes", {}).get("N", 0)),
        )

    # -- writes: the image item and its tag copies, together or not at all ---------------------

    async def create(self, record: ImageRecord) -> ImageRecord:
        """Stores a new image; returns it as stored (with its first revision). The upload-URL
        path's one write, group-committed with the creations arriving together (batching.py)."""
        stored, requests = self._put_requests(record)
        await self._creations.write(requests)
        return stored

    async def create_if_absent(self, record: ImageRecord) -> ImageRecord | None:
        """Stores a new image unless one with its id exists (a keyed import's retry): the
        image as stored, or None."""
        writes, stored = self._image_writes(None, record)
        reasons = await self._apply(writes)
        if reasons is None:
            assert stored is not None
            return stored
        if reasons.get(IMAGE) == "ConditionalCheckFailed":
            return None
        raise _Refused(reasons)

    def _put_requests(self, record: ImageRecord) -> tuple[ImageRecord, list[dict[str, Any]]]:
        stored = replace(record, revision=1)
        item = to_item(stored, dead_record_ttl=self._dead_record_ttl)
        writes = (item, *tag_copies(stored, item))
        return stored, [{"PutRequest": {"Item": write}} for write in writes]

    async def put_many(self, records: list[ImageRecord]) -> None:
        """Stores new images and their tag copies in batches of 25 writes, unconditionally:
        a bulk load (imports, benchmarks) for ids nobody else is writing, never a request."""
        requests = [put for record in records for put in self._put_requests(record)[1]]
        for start in range(0, len(requests), BATCH_WRITE_SIZE):
            await self._creations.batch_write(requests[start : start + BATCH_WRITE_SIZE])

    async def replace_if_status(
        self, record: ImageRecord, expected: ImageStatus, *, owed: Owed | None = None
    ) -> bool:
        """Stores ``record``, the service's next state of an image it read with ``expected``
        status (and ``record.revision``); False if the image has left that status or is gone.
        Tags and description are the owner's: an edit made meanwhile is kept, not overwritten.
        ``owed``: the event and jobs the change owes, in its transaction (the outbox)."""
        read = replace(record, status=expected)  # as the caller read it
        return await self._rewrite(read, self._advance(record, expected), owed=owed) is not None

    async def publish_counted(
        self,
        record: ImageRecord,
        expected: ImageStatus,
        *,
        max_images: int,
        max_bytes: int,
        owed: Owed | None = None,
    ) -> bool:
        """``replace_if_status``, adding the image to its owner's usage in the same
        transaction. QuotaExceeded if the usage has no room for it."""
        size = record.counted_bytes or 0
        usage = {
            "Update": {
                "TableName": self.table,
                "Key": item_key(record.user_id, USAGE_ID),
                "UpdateExpression": "ADD images :one, #bytes :size",
                "ConditionExpression": (
                    "attribute_not_exists(images) OR (images < :max_images AND #bytes <= :room)"
                ),
                "ExpressionAttributeNames": {"#bytes": "bytes"},
                "ExpressionAttributeValues": {
                    ":one": number_value(1),
                    ":size": number_value(size),
                    ":max_images": number_value(max_images),
                    ":room": number_value(max_bytes - size),
                },
            }
        }
        try:
            published = await self._rewrite(
                replace(record, status=expected),
                self._advance(record, expected),
                extra=lambda _: [(USAGE, usage)],
                owed=owed,
            )
        except _Refused as refused:
            if refused.reasons.get(USAGE) == "ConditionalCheckFailed":
                raise QuotaExceeded(
                    "This upload would exceed the owner's quota.",
                    details={"max_images": max_images, "max_bytes": max_bytes},
                ) from None
            raise
        return published is not None

    async def update_details(
        self,
        user_id: str,
        image_id: str,
        *,
        updated_at: datetime,
        tags: list[str] | None,
        description: str | None,
        focal: FocalPoint | Keep | None = Keep.KEEP,
        owed: Owed | None = None,
        add_tags: Sequence[str] = (),
        remove_tags: Sequence[str] = (),
    ) -> ImageRecord | None:
        """Sets tags, description and/or the focal point, and adds and removes tags from the
        image as it is when written (a concurrent edit's tags are kept); None when the image
        does not exist."""

        def edit(current: ImageRecord) -> ImageRecord:
            return replace(
                current,
                updated_at=updated_at,
                tags=edited_tags(current.tags if tags is None else tags, add_tags, remove_tags),
                description=current.description if description is None else description,
                focal=current.focal if focal is Keep.KEEP else focal,
            )

        return await self._rewrite(await self.get(user_id, image_id), edit, owed=owed)

    async def mark_deleting(
        self, record: ImageRecord, *, updated_at: datetime, only_from: ImageStatus | None = None
    ) -> ImageRecord | None:
        """Sets the deleting status; None when the image is already gone (or, with
        ``only_from``, no longer in that status: a purge loses to a restore)."""

        def mark(current: ImageRecord) -> ImageRecord | None:
            if only_from is not None and current.status is not only_from:
                return None
            return replace(current, status=ImageStatus.DELETING, updated_at=updated_at)

        return await self._rewrite(record, mark)

    async def trash(
        self,
        record: ImageRecord,
        *,
        trashable: frozenset[ImageStatus],
        now: datetime,
        owed: Owed | None = None,
    ) -> ImageRecord | None:
        """Moves the image to the trash if it is in a ``trashable`` status; None otherwise
        (gone, or changed into another status meanwhile)."""

        def into_trash(current: ImageRecord) -> ImageRecord | None:
            if current.status not in trashable:
                return None
            return replace(
                current,
                status=ImageStatus.TRASHED,
                trashed_from=current.status,
                trashed_at=now,
                updated_at=now,
            )

        return await self._rewrite(record, into_trash, owed=owed)

    async def restore(
        self, record: ImageRecord, *, now: datetime, owed: Owed | None = None
    ) -> ImageRecord | None:
        """Takes the image out of the trash, into the status it had; None when it is no
        longer in the trash (restored already, or being purged)."""

        def out_of_trash(current: ImageRecord) -> ImageRecord | None:
            if current.status is not ImageStatus.TRASHED or current.trashed_from is None:
                return None
            return replace(
                current,
                status=current.trashed_from,
                trashed_from=None,
                trashed_at=None,
                updated_at=now,
            )

        return await self._rewrite(record, out_of_trash, owed=owed)

    async def delete(
        self, record: ImageRecord, *, unchanged_only: bool = False, owed: Owed | None = None
    ) -> bool:
        """Deletes the image with its tag copies and, if it was counted, takes it off its
        owner's usage, in one transaction; already gone is done. ``unchanged_only``: only
        while the image is still at ``record``'s revision (maintenance, which must never act
        on a stale view). False when nothing was deleted."""

        def usage_back(current: ImageRecord) -> list[NamedWrite]:
            if current.counted_bytes is None:
                return []
            return [
                (
                    USAGE,
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": item_key(current.user_id, USAGE_ID),
                            "UpdateExpression": "ADD images :minus_one, #bytes :minus_size",
                            "ExpressionAttributeNames": {"#bytes": "bytes"},
                            "ExpressionAttributeValues": {
                                ":minus_one": number_value(-1),
                                ":minus_size": number_value(-current.counted_bytes),
                            },
                        }
                    },
                )
            ]

        def delete(current: ImageRecord) -> _Delete | None:
            if unchanged_only and current.revision != record.revision:
                return None
            return _Delete.DELETE

        return await self._rewrite(record, delete, extra=usage_back, owed=owed) is not None

    async def add_to_album(
        self, record: ImageRecord, album_id: str, *, max_albums: int
    ) -> ImageRecord | None:
        """Puts the image in the album (its membership item with it), if the album still
        exists; None when the image is gone, in the album already, or in ``max_albums``.
        AlbumGone when the album is not there."""
        album = {
            "ConditionCheck": {
                "TableName": self.table,
                "Key": item_key(record.user_id, album_id_key(album_id)),
                "ConditionExpression": "attribute_exists(image_id)",
            }
        }

        def join(current: ImageRecord) -> ImageRecord | None:
            if album_id in current.albums or len(current.albums) >= max_albums:
                return None
            return replace(current, albums=sorted([*current.albums, album_id]))

        try:
            return await self._rewrite(record, join, extra=lambda _: [(ALBUM, album)])
        except _Refused as refused:
            if refused.reasons.get(ALBUM) == "ConditionalCheckFailed":
                raise AlbumGone(album_id) from None
            raise

    async def remove_from_album(self, record: ImageRecord, album_id: str) -> bool:
        """Takes the image out of the album; False when it was not in it (or is gone)."""

        def leave(current: ImageRecord) -> ImageRecord | None:
            if album_id not in current.albums:
                return None
            return replace(current, albums=[a for a in current.albums if a != album_id])

        return await self._rewrite(record, leave) is not None

    async def index_digest(self, record: ImageRecord) -> bool:
        """Gives an image verified before digests were indexed its digest item (its stored
        bytes' SHA-256 as the uploaded one: the same unless GPS was stripped from them), in
        the transaction that records it, as of the image's current revision; False when
        there is nothing to do (or the image is gone)."""

        def with_digest(current: ImageRecord) -> ImageRecord | None:
            if current.uploaded_sha256 is not None or current.sha256 is None:
                return None
            if current.status not in {ImageStatus.PROCESSING, ImageStatus.READY}:
                return None  # deleted or quarantined meanwhile: its bytes are not owned
            return replace(current, uploaded_sha256=current.sha256)

        return await self._rewrite(record, with_digest) is not None

    async def touch(self, record: ImageRecord, *, updated_at: datetime) -> ImageRecord | None:
        """Sets ``updated_at`` if the image is still as ``record`` (same status and revision):
        of several sweepers that found the same image, exactly one gets it back."""

        def claim(current: ImageRecord) -> ImageRecord | None:
            if current.revision != record.revision or current.status is not record.status:
                return None
            return replace(current, updated_at=updated_at)

        try:
            return await self._rewrite(record, claim)
        except Conflict:
            return None  # others are changing it: not stuck

    @staticmethod
    def _advance(record: ImageRecord, expected: ImageStatus) -> Change:
        def advance(current: ImageRecord) -> ImageRecord | None:
            if current.status is not expected:
                return None
            return replace(record, tags=current.tags, description=current.description)

        return advance

    async def _rewrite(
        self,
        current: ImageRecord | None,
        change: Change,
        *,
        extra: Callable[[ImageRecord], list[NamedWrite]] | None = None,
        owed: Owed | None = None,
    ) -> ImageRecord | None:
        """Applies ``change`` to ``current`` (the image as its caller read it) and stores the
        result, with what the change ``owed`` (its feed entry and outbox jobs); if another
        writer changed the image first, re-reads it and applies ``change`` again. Returns the
        record as stored (the deleted one for a delete), or None when the image is gone or
        ``change`` leaves it alone."""
        for _ in range(_WRITE_ATTEMPTS):
            if current is None:
                return None
            wanted = change(current)
            if wanted is None:
                return None
            writes, stored = self._image_writes(
                current, None if wanted is _Delete.DELETE else wanted
            )
            if extra is not None:
                writes += extra(current)
            if owed is not None:
                writes += self._owed_writes(owed, current if stored is None else stored)
            reasons = await self._apply(writes)
            if reasons is None:
                return current if stored is None else stored
            # The image's own condition failed, or DynamoDB saw two transactions collide:
            # another writer was first. Anything else (the usage's room) is the caller's to say.
            lost_race = reasons.get(IMAGE) == "ConditionalCheckFailed"
            if not lost_race and "TransactionConflict" not in reasons.values():
                raise _Refused(reasons)
            current = await self.get(current.user_id, current.image_id)
        raise Conflict("The image is being changed by others; try again.", code="concurrent_update")

    def _image_writes(
        self, old: ImageRecord | None, new: ImageRecord | None
    ) -> tuple[list[NamedWrite], ImageRecord | None]:
        """The writes taking the stored image from ``old`` (as read; None: absent) to ``new``
        (None: deleted), tag copies included, conditional on the image still being ``old``;
        and ``new`` as it will be stored (its next revision)."""
        if old is None:
            condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(image_id)"}
        else:
            condition = {
                "ConditionExpression": "#revision = :revision",
                "ExpressionAttributeNames": {"#revision": "revision"},
                "ExpressionAttributeValues": {":revision": number_value(old.revision)},
            }
        subject = new or old
        assert subject is not None
        owner, image_id = subject.user_id, subject.image_id
        writes: list[NamedWrite] = []
        kept_tags: list[str] = []
        if new is None:
            key = item_key(owner, image_id)
            writes.append((IMAGE, {"Delete": {"TableName": self.table, "Key": key, **condition}}))
        else:
            new = replace(new, revision=(old.revision if old else 0) + 1)
            item = to_item(new, dead_record_ttl=self._dead_record_ttl)
            writes.append((IMAGE, {"Put": {"TableName": self.table, "Item": item, **condition}}))
            kept_tags = indexed_tags(new)
            writes.extend(
                (f"tag copy {tag}", {"Put": {"TableName": self.table, "Item": copy}})
                for tag, copy in zip(kept_tags, tag_copies(new, item), strict=True)
            )
        # Album memberships follow the record's albums, as tag copies follow its tags.
        old_albums = set(old.albums) if old else set()
        new_albums = set(new.albums) if new else set()
        for album_id in sorted(new_albums - old_albums):
            assert new is not None
            put = {"Put": {"TableName": self.table, "Item": membership_item(new, album_id)}}
            writes.append((f"album {album_id}", put))
        for album_id in sorted(old_albums - new_albums):
            assert old is not None
            key = {
                "user_id": membership_item(old, album_id)["user_id"],
                "image_id": membership_item(old, album_id)["image_id"],
            }
            removal = {"Delete": {"TableName": self.table, "Key": key}}
            writes.append((f"old album {album_id}", removal))
        for tag in indexed_tags(old) if old else []:
            if tag not in kept_tags:
                key = item_key(owner, tag_copy_id(image_id, tag))
                writes.append(
                    (f"old tag copy {tag}", {"Delete": {"TableName": self.table, "Key": key}})
                )
        old_digest = indexed_digest(old) if old else None
        new_digest = indexed_digest(new) if new else None
        if old_digest != new_digest:
            if old_digest is not None:
                removal = self._digest_write(owner, old_digest, "DELETE", image_id)
                writes.append(("old digest", removal))
            if new_digest is not None:
                writes.append(("digest", self._digest_write(owner, new_digest, "ADD", image_id)))
        return writes, new

    def _owed_writes(self, owed: Owed, record: ImageRecord) -> list[NamedWrite]:
        """The outbox's items for what a change owes: its feed entry (``record``: the image as
        the change leaves it) and a kept item per job. Keyed by the change, so a re-applied
        change writes the same items again, never more of them."""
        writes: list[NamedWrite] = [
            (
                "feed",
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": feed_item(
                            owed.event_type,
                            record,
                            at=owed.at,
                            origin=owed.origin,
                            entry_id=owed.change_id,
                        ),
                    }
                },
            )
        ]
        for owed_job in owed.jobs:
            body = json.dumps(owed_job.job, separators=(",", ":"))
            item = kept_job_item(owed_job.user_id, owed_job.job_id, body, kept_at=owed.at)
            writes.append(
                (f"outbox {owed_job.job_id}", {"Put": {"TableName": self.table, "Item": item}})
            )
        return writes

    def _digest_write(self, owner: str, digest: str, action: str, image_id: str) -> dict[str, Any]:
        """Adds the image to (or takes it from) the set of its owner's images with ``digest``.
        Set arithmetic needs no condition: concurrent images with the same bytes both land."""
        return {
            "Update": {
                "TableName": self.table,
                "Key": item_key(owner, digest_id(digest)),
                "UpdateExpression": f"{action} #images :image",
                "ExpressionAttributeNames": {"#images": DIGEST_IMAGES},
                "ExpressionAttributeValues": {":image": {"SS": [image_id]}},
            }
        }

    async def images_by_digest(self, owner: str, digests: list[str]) -> dict[str, list[str]]:
        """For each hex SHA-256 the owner has images of, those images' ids (sorted). Key reads
        of the digest items, a hundred per ``BatchGetItem``, the batches at once."""
        batches = [
            digests[start : start + BATCH_GET_SIZE]
            for start in range(0, len(digests), BATCH_GET_SIZE)
        ]
        found: dict[str, list[str]] = {}
        keyed = [[item_key(owner, digest_id(d)) for d in dict.fromkeys(b)] for b in batches]
        for items in await asyncio.gather(*(self._batch_get(keys) for keys in keyed)):
            for item in items:
                images = item.get(DIGEST_IMAGES, {}).get("SS", [])
                if images:
                    found[item["image_id"]["S"].removeprefix(digest_id(""))] = sorted(images)
        return found

    async def get_many(self, keys: Sequence[tuple[str, str]]) -> list[ImageRecord]:
        """The images of these (owner, image id) keys that exist, a hundred per
        ``BatchGetItem``, the batches at once (what ``?wait=ready`` polls)."""
        batches = [
            [item_key(owner, image_id) for owner, image_id in keys[start : start + BATCH_GET_SIZE]]
            for start in range(0, len(keys), BATCH_GET_SIZE)
        ]
        found = await asyncio.gather(*(self._batch_get(batch) for batch in batches))
        return [from_item(item) for items in found for item in items if "status" in item]

    async def _batch_get(self, keys: list[Item]) -> list[Item]:
        request: dict[str, Any] = {"Keys": keys, "ConsistentRead": True}
        items: list[Item] = []
        for attempt in range(_BATCH_GET_ATTEMPTS):
            if attempt:  # DynamoDB left some out under throttling: ask again, backing off
                await asyncio.sleep(0.05 * 2**attempt)
            with backend_errors(BACKEND):
                response = await self._dynamodb.call(
                    "BatchGetItem", {"RequestItems": {self.table: request}}
                )
            items.extend(response.get("Responses", {}).get(self.table, []))
            unprocessed = response.get("UnprocessedKeys", {}).get(self.table)
            if not unprocessed:
                return items
            request = unprocessed
        raise BackendUnavailable(BACKEND, "BatchGetItem left keys unprocessed")

    async def _apply(self, writes: list[NamedWrite]) -> dict[str, str] | None:
        """Runs the writes as one: None when done, else why each was refused, by name
        ("None" for those that were not)."""
        requests = [request for _, request in writes]
        with backend_errors(BACKEND):
            try:
                if len(requests) > 1:
                    await self._dynamodb.call("TransactWriteItems", {"TransactItems": requests})
                elif "Put" in requests[0]:
                    await self._dynamodb.call("PutItem", requests[0]["Put"])
                else:
                    await self._dynamodb.call("DeleteItem", requests[0]["Delete"])
            except ClientError as exc:
                code = error_code(exc)
                if code == "ConditionalCheckFailedException":
                    return {writes[0][0]: "ConditionalCheckFailed"}
                if code == "TransactionCanceledException":
                    # DynamoDB gives one reason per item, in the order the items were sent.
                    reasons = exc.response.get("CancellationReasons", [])
                    return {
                        name: str(reason.get("Code", "None"))
                        for (name, _), reason in zip(writes, reasons, strict=False)
                    } or {writes[0][0]: "None"}
                raise
        return None

    async def adopt_legacy(self, record: ImageRecord) -> ImageRecord | None:
        """Replaces the original service's item of ``record``'s image with ``record``, pending
        (its first state here); None if the item is no longer the original's: another migration
        adopted it first, or it was deleted."""
        assert record.status is ImageStatus.PENDING  # so it has no tag copies yet
        stored = replace(record, revision=1)
        put = {
            "TableName": self.table,
            "Item": to_item(stored, dead_record_ttl=self._dead_record_ttl),
            "ConditionExpression": "attribute_exists(s3_key) AND attribute_not_exists(#status)",
            "ExpressionAttributeNames": {"#status": "status"},
        }
        reasons = await self._apply([(IMAGE, {"Put": put})])
        return stored if reasons is None else None
