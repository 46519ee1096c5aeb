"""The image records: their reads, and every state transition (create, publish, edit, trash,
restore, delete, albums, digests...), each a change made by ``writes.py``'s one optimistic
mechanism: a transaction conditional on the revision its writer read, re-applied on a race."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

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
    from_item,
    item_key,
    number_value,
    tag_copies,
    to_item,
)
from image_service.storage.dynamo.writes import (
    ALBUM,
    IMAGE,
    USAGE,
    Change,
    Deletion,
    ImageWrites,
    NamedWrite,
    WriteRefused,
)
from image_service.storage.errors import backend_errors

# DynamoDB's most keys in one BatchGetItem, and how often its unprocessed keys are asked again.
BATCH_GET_SIZE = 100
_BATCH_GET_ATTEMPTS = 5


class ImageRecords(ImageWrites):
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
        raise WriteRefused(reasons)

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
        except WriteRefused as refused:
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

        def delete(current: ImageRecord) -> Deletion | None:
            if unchanged_only and current.revision != record.revision:
                return None
            return Deletion.DELETE

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
        except WriteRefused as refused:
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
