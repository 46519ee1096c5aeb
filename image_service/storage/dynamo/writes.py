"""How an image's stored state changes: optimistically, as one transaction of named writes.

Each change is a transaction of named writes (the image, its usage, its tag copies, its album
memberships, its digest, and what the change owes: its feed entry and outbox jobs) conditional
on the ``revision`` its writer read, and re-applied on a fresh read when another writer got
there first, so the copies never drift from their image. ``records.py`` makes every state
transition of this one mechanism."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from enum import Enum
from typing import Any

from botocore.exceptions import ClientError

from image_service.domain.errors import Conflict
from image_service.domain.models import ImageRecord
from image_service.domain.ports import Owed
from image_service.storage.dynamo.codec import (
    BACKEND,
    DIGEST_IMAGES,
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


# One write of a transaction, by name: its outcome is looked up by name, never by position.
NamedWrite = tuple[str, dict[str, Any]]
IMAGE = "image"  # the image item itself, conditional on the revision its writer read
USAGE = "usage"  # its owner's usage item, conditional on the room the quota leaves
ALBUM = "album"  # an album the image joins, which must still exist


class WriteRefused(Exception):
    """A write's condition failed for a reason other than a concurrent writer."""

    def __init__(self, reasons: dict[str, str]) -> None:
        super().__init__(reasons)
        self.reasons = reasons


class Deletion(Enum):
    DELETE = "delete"


# What a change makes of the stored image: this record, no image, or None to leave it alone.
Change = Callable[[ImageRecord], "ImageRecord | Deletion | None"]


class ImageWrites(Table):
    async def get(self, user_id: str, image_id: str) -> ImageRecord | None:
        item = await self._read_item(user_id, image_id)
        if item is None or "status" not in item:
            # Absent, or the original service's item: not an image here until it is migrated.
            return None
        return from_item(item)

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
                current, None if wanted is Deletion.DELETE else wanted
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
                raise WriteRefused(reasons)
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
