"""Image metadata in DynamoDB.

Table: partition key ``user_id``, sort key ``image_id`` (the original service's model). Every
listing is a query on one of three global secondary indexes, all sorted by upload time then image
id, so a page reads what it returns whatever the user owns (``docs/data-model.md``):

- ``by_upload_time`` (``user_id``): newest first, date ranges;
- ``by_status`` (``status_key`` = owner and status): one status;
- ``by_tag`` (``tag_key`` = owner and tag): one tag. An image has many tags and an index key has
  one value, so each tag gets a *tag copy* of the image item (sort key ``<image id>#tag#<tag>``),
  written in the same transaction as the image, which is the only way the copies change. Copies
  exist from completion on: a pending upload is listed by time and status, not by tag.

A fourth, sparse index, ``by_attention`` (``attention_key`` = status and shard, sorted by last
change), holds only images between two steps (processing, deleting), for the sweeper.

Writes are optimistic: each is conditional on the ``revision`` its writer read and re-applied on
a fresh read when another writer got there first, so the copies never drift from their image.
"""

from __future__ import annotations

import asyncio
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from botocore.exceptions import ClientError

from image_service.cursor import CursorPosition
from image_service.errors import BackendUnavailable, Conflict, QuotaExceeded, Unstorable
from image_service.models import (
    ImageRecord,
    ImageStatus,
    ListFilter,
    PresignedUpload,
    Usage,
    Variant,
    format_timestamp,
    parse_timestamp,
)
from image_service.storage.errors import backend_errors, error_code

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import AttributeValueTypeDef

BACKEND = "dynamodb"
UPLOAD_TIME_INDEX = "by_upload_time"
STATUS_INDEX = "by_status"
TAG_INDEX = "by_tag"
ATTENTION_INDEX = "by_attention"
# (index, partition key attribute, sort key attribute)
INDEXES = (
    (UPLOAD_TIME_INDEX, "user_id", "upload_sort"),
    (STATUS_INDEX, "status_key", "upload_sort"),
    (TAG_INDEX, "tag_key", "tag_sort"),
    (ATTENTION_INDEX, "attention_key", "attention_sort"),
)
_TAG_COPY_MARK = "#tag#"
# Attributes only the image item has: a tag copy carrying them would show up in those indexes.
_IMAGE_ONLY = ("upload_sort", "status_key", "attention_key", "attention_sort")
# Images in these statuses are between two steps and are finished by the sweeper if the step
# that should have followed never came (a lost job, a delete cut short). The attention index is
# sparse: it holds only them, over this many partitions per status, so that the sweeper's
# queries spread over DynamoDB partitions instead of all hitting one.
NEEDS_ATTENTION = frozenset({ImageStatus.PROCESSING, ImageStatus.DELETING})
ATTENTION_SHARDS = 8
# Writers that lose a race re-read and re-apply their change; this many times, then 409.
_WRITE_ATTEMPTS = 8
_BATCH_WRITE_SIZE = 25  # BatchWriteItem's limit
_CREATE_BATCHES_IN_FLIGHT = 2
# Items read per query while a filter discards some: fewer round trips when matches are sparse,
# while the page itself is still cut at the requested size.
FILTERED_READ_BATCH = 100
# Sorts after every character of an image id, so "<time>#~" bounds all ids at that time.
_AFTER_ANY_ID = "~"

Item = dict[str, "AttributeValueTypeDef"]


_IDEMPOTENCY_PREFIX = "idempotency#"
_USAGE_ID = "usage#totals"


@dataclass(frozen=True, slots=True)
class IdempotentUpload:
    """What a keyed upload-URL request answered, to answer its retries the same."""

    fingerprint: str  # of the request body: the same key with another body is refused
    owner: str
    image_id: str
    upload: PresignedUpload


def upload_sort_key(record: ImageRecord) -> str:
    return f"{format_timestamp(record.upload_time)}#{record.image_id}"


def _owner_part(user_id: str) -> str:
    # Percent-encoded, so the first "#" of an index key ends the owner whatever follows.
    return quote(user_id, safe="")


def status_key(user_id: str, status: ImageStatus) -> str:
    return f"{_owner_part(user_id)}#{status.value}"


def tag_key(user_id: str, tag: str) -> str:
    return f"{_owner_part(user_id)}#{tag}"


def tag_copy_id(image_id: str, tag: str) -> str:
    return f"{image_id}{_TAG_COPY_MARK}{tag}"


def attention_key(record: ImageRecord) -> str:
    shard = zlib.crc32(f"{record.user_id}/{record.image_id}".encode()) % ATTENTION_SHARDS
    return f"{record.status.value}#{shard}"


def _s(value: str) -> AttributeValueTypeDef:
    return {"S": value}


def _n(value: int) -> AttributeValueTypeDef:
    return {"N": str(value)}


# Records of uploads that never became images expire (DynamoDB TTL) after this attribute's time.
EXPIRY_ATTRIBUTE = "expires_at"
_EXPIRING = {ImageStatus.PENDING, ImageStatus.REJECTED}


def to_item(record: ImageRecord, *, dead_record_ttl: int | None = None) -> Item:
    item: Item = {
        "user_id": _s(record.user_id),
        "image_id": _s(record.image_id),
        "s3_key": _s(record.s3_key),
        "content_type": _s(record.content_type),
        "status": _s(record.status.value),
        "upload_time": _s(format_timestamp(record.upload_time)),
        "upload_sort": _s(upload_sort_key(record)),
        "status_key": _s(status_key(record.user_id, record.status)),
        "revision": _n(record.revision),
        "updated_at": _s(format_timestamp(record.updated_at)),
        "tags": {"L": [_s(tag) for tag in record.tags]},
        "description": _s(record.description),
    }
    optional_strings = {
        "filename": record.filename,
        "declared_checksum_sha256": record.declared_checksum_sha256,
        "sha256": record.sha256,
        "rejection_reason": record.rejection_reason,
    }
    optional_numbers = {
        "counted_bytes": record.counted_bytes,
        "declared_size": record.declared_size,
        "size": record.size,
        "width": record.width,
        "height": record.height,
    }
    item.update({name: _s(value) for name, value in optional_strings.items() if value is not None})
    if record.variants:
        item["variants"] = {"L": [{"M": _variant_item(variant)} for variant in record.variants]}
    if record.placeholder is not None:
        item["placeholder"] = _s(record.placeholder)
    if record.status in NEEDS_ATTENTION:
        item["attention_key"] = _s(attention_key(record))
        item["attention_sort"] = _s(format_timestamp(record.updated_at))
    if dead_record_ttl is not None and record.status in _EXPIRING:
        item[EXPIRY_ATTRIBUTE] = _n(int(record.updated_at.timestamp()) + dead_record_ttl)
    item.update({name: _n(value) for name, value in optional_numbers.items() if value is not None})
    return item


def indexed_tags(record: ImageRecord) -> list[str]:
    """The tags an image is listed by. A pending image is none yet: it has no bytes until its
    upload completes, so it is listed by time and by status only, and the upload-URL path
    writes one item, not one per tag."""
    return [] if record.status is ImageStatus.PENDING else record.tags


def tag_copies(record: ImageRecord, image_item: Item) -> list[Item]:
    """The image item once per indexed tag, keyed and indexed for listing by that tag."""
    shared = {name: value for name, value in image_item.items() if name not in _IMAGE_ONLY}
    return [
        {
            **shared,
            "image_id": _s(tag_copy_id(record.image_id, tag)),
            "tag_key": _s(tag_key(record.user_id, tag)),
            "tag_sort": image_item["upload_sort"],
        }
        for tag in indexed_tags(record)
    ]


def _variant_item(variant: Variant) -> Item:
    return {
        "name": _s(variant.name),
        "format": _s(variant.format),
        "content_type": _s(variant.content_type),
        "key": _s(variant.key),
        "width": _n(variant.width),
        "height": _n(variant.height),
        "size": _n(variant.size),
    }


def _variant(item: dict[str, Any]) -> Variant:
    return Variant(
        name=item["name"]["S"],
        format=item["format"]["S"],
        content_type=item["content_type"]["S"],
        key=item["key"]["S"],
        width=int(item["width"]["N"]),
        height=int(item["height"]["N"]),
        size=int(item["size"]["N"]),
    )


def from_item(item: dict[str, Any]) -> ImageRecord:
    def string(name: str) -> str | None:
        value = item.get(name)
        return None if value is None else str(value["S"])

    def number(name: str) -> int | None:
        value = item.get(name)
        return None if value is None else int(value["N"])

    return ImageRecord(
        user_id=item["user_id"]["S"],
        # A tag copy's sort key is "<image id>#tag#<tag>"; image ids never contain "#".
        image_id=item["image_id"]["S"].split("#", 1)[0],
        s3_key=item["s3_key"]["S"],
        content_type=item["content_type"]["S"],
        status=ImageStatus(item["status"]["S"]),
        upload_time=parse_timestamp(item["upload_time"]["S"]),
        updated_at=parse_timestamp(item["updated_at"]["S"]),
        tags=[tag["S"] for tag in item.get("tags", {}).get("L", [])],
        description=item.get("description", {}).get("S", ""),
        filename=string("filename"),
        declared_size=number("declared_size"),
        declared_checksum_sha256=string("declared_checksum_sha256"),
        counted_bytes=number("counted_bytes"),
        size=number("size"),
        width=number("width"),
        height=number("height"),
        sha256=string("sha256"),
        rejection_reason=string("rejection_reason"),
        variants=[_variant(entry["M"]) for entry in item.get("variants", {}).get("L", [])],
        placeholder=string("placeholder"),
        revision=number("revision") or 0,
    )


@dataclass(frozen=True, slots=True)
class LegacyImage:
    """An image item the original service wrote: the keys, the object and the owner's words,
    with no status, revision or index attributes. Its tags may be a list, a string set or one
    comma-separated string, and its upload time naive (UTC) or missing, depending on who wrote
    it; they are read as all of those."""

    user_id: str
    image_id: str
    s3_key: str
    content_type: str
    upload_time: datetime | None
    tags: list[str]
    description: str


def legacy_from_item(item: dict[str, Any]) -> LegacyImage:
    tags_value = item.get("tags", {})
    if "L" in tags_value:
        tags = [str(tag["S"]) for tag in tags_value["L"] if "S" in tag]
    elif "SS" in tags_value:
        tags = sorted(str(tag) for tag in tags_value["SS"])
    elif "S" in tags_value:
        tags = [tag.strip() for tag in str(tags_value["S"]).split(",") if tag.strip()]
    else:
        tags = []
    upload_time: datetime | None = None
    try:
        written = datetime.fromisoformat(str(item["upload_time"]["S"]))
        upload_time = (written if written.tzinfo else written.replace(tzinfo=UTC)).astimezone(UTC)
    except (KeyError, ValueError):
        pass
    return LegacyImage(
        user_id=item["user_id"]["S"],
        image_id=item["image_id"]["S"],
        s3_key=item["s3_key"]["S"],
        content_type=item.get("content_type", {}).get("S", "application/octet-stream"),
        upload_time=upload_time,
        tags=tags,
        description=str(item.get("description", {}).get("S", "")),
    )


def _key(user_id: str, image_id: str) -> Item:
    return {"user_id": _s(user_id), "image_id": _s(image_id)}


def _condition_failed(exc: ClientError) -> bool:
    return error_code(exc) == "ConditionalCheckFailedException"


class _Refused(Exception):
    """A write's condition failed for a reason other than a concurrent writer."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(reasons)
        self.reasons = reasons


class _Delete(Enum):
    DELETE = "delete"


# What a change makes of the stored image: this record, no image, or None to leave it alone.
Change = Callable[[ImageRecord], "ImageRecord | _Delete | None"]


# A creation's put requests, and the future its caller awaits.
_Creation = tuple[list[dict[str, Any]], "asyncio.Future[None]"]


def _tell(creations: list[_Creation], failure: BaseException | None) -> None:
    for _, waiter in creations:
        if waiter.done():  # a caller that gave up (its client went away)
            continue
        if failure is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(failure)


class ImageRepository:
    def __init__(
        self, client: DynamoDBClient, table: str, *, dead_record_ttl: int | None = None
    ) -> None:
        self._client = client
        self.table = table
        # Pending and rejected records are deleted by DynamoDB this long after their last change.
        self._dead_record_ttl = dead_record_ttl
        # Creations waiting for a batch (their put requests, and who to tell), and batches
        # being written.
        self._waiting: deque[_Creation] = deque()
        self._batches: set[asyncio.Task[None]] = set()

    async def get(self, user_id: str, image_id: str) -> ImageRecord | None:
        with backend_errors(BACKEND):
            response = await self._client.get_item(
                TableName=self.table, Key=_key(user_id, image_id), ConsistentRead=True
            )
        item = response.get("Item")
        if item is None or "status" not in item:
            # Absent, or the original service's item: not an image here until it is migrated.
            return None
        return from_item(item)

    async def exists(self, user_id: str, image_id: str) -> bool:
        """Whether any item (an image of any status, or the original service's) has this key."""
        with backend_errors(BACKEND):
            response = await self._client.get_item(
                TableName=self.table,
                Key=_key(user_id, image_id),
                ConsistentRead=True,
                ProjectionExpression="image_id",
            )
        return "Item" in response

    # -- usage: one item per user, changed in the same transaction as the image it counts ------

    async def usage(self, user_id: str) -> Usage:
        with backend_errors(BACKEND):
            response = await self._client.get_item(
                TableName=self.table, Key=_key(user_id, _USAGE_ID), ConsistentRead=True
            )
        item = response.get("Item", {})
        return Usage(
            images=int(item.get("images", {}).get("N", 0)),
            bytes=int(item.get("bytes", {}).get("N", 0)),
        )

    # -- writes: the image item and its tag copies, together or not at all ---------------------

    async def create(self, record: ImageRecord) -> ImageRecord:
        """Stores a new image; returns it as stored (with its first revision).

        The upload-URL path's one write, so creations arriving together share BatchWriteItem
        calls (group commit): a creation starts a batch at once while fewer than
        ``_CREATE_BATCHES_IN_FLIGHT`` are being written, else waits for the next one, which
        takes every waiting creation that fits. Alone, a creation costs one call as before;
        under load, one call per up to 25 items. Unconditional (a fresh UUID has no twin) and
        not atomic: if a batch fails after its retries, its callers get a 503 and the parts
        written expire with the TTL of pending records.
        """
        stored, requests = self._put_requests(record)
        written = asyncio.get_running_loop().create_future()
        self._waiting.append((requests, written))
        self._start_batches()
        # The write runs in the batch's task; a request cancelled here (its deadline passed)
        # was still waiting on DynamoDB, and its 503 says so.
        with backend_errors(BACKEND):
            await written
        return stored

    def _put_requests(self, record: ImageRecord) -> tuple[ImageRecord, list[dict[str, Any]]]:
        stored = replace(record, revision=1)
        item = to_item(stored, dead_record_ttl=self._dead_record_ttl)
        writes = (item, *tag_copies(stored, item))
        return stored, [{"PutRequest": {"Item": write}} for write in writes]

    def _start_batches(self) -> None:
        while self._waiting and len(self._batches) < _CREATE_BATCHES_IN_FLIGHT:
            creations: list[_Creation] = []
            size = 0
            # Whole creations only (at most 21 items each: the image and 20 tag copies).
            while self._waiting and (
                not creations or size + len(self._waiting[0][0]) <= _BATCH_WRITE_SIZE
            ):
                creation = self._waiting.popleft()
                creations.append(creation)
                size += len(creation[0])
            batch = asyncio.create_task(self._write_for(creations))
            self._batches.add(batch)
            batch.add_done_callback(self._batch_done)

    def _batch_done(self, batch: asyncio.Task[None]) -> None:
        self._batches.discard(batch)
        self._start_batches()

    async def _write_for(self, creations: list[_Creation]) -> None:
        """Writes the creations in one call and tells each how it went. DynamoDB refuses a
        batch as a whole for one item's values (too large, a key too long): then the halves
        are written apart, down to the one creation to blame, so only its request fails."""
        try:
            await self._batch_write([request for requests, _ in creations for request in requests])
        except Unstorable as exc:
            if len(creations) > 1:
                middle = len(creations) // 2
                await asyncio.gather(
                    self._write_for(creations[:middle]), self._write_for(creations[middle:])
                )
                return
            _tell(creations, exc)
        except Exception as exc:  # every waiter hears how its write ended, whatever it was
            _tell(creations, exc)
        else:
            _tell(creations, None)

    async def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        """One BatchWriteItem of up to 25 puts, retrying what DynamoDB leaves unprocessed."""
        with backend_errors(BACKEND):
            for attempt in range(_WRITE_ATTEMPTS):
                response = await self._client.batch_write_item(
                    RequestItems={self.table: requests}  # type: ignore[dict-item]  # plain dicts
                )
                requests = response.get("UnprocessedItems", {}).get(self.table, [])  # type: ignore[assignment]  # as above
                if not requests:
                    return
                await asyncio.sleep(0.05 * 2**attempt)  # throttled: back off, then the rest
        raise BackendUnavailable(BACKEND, "UnprocessedItems")

    async def replace_if_status(self, record: ImageRecord, expected: ImageStatus) -> bool:
        """Stores ``record``, the service's next state of an image it read with ``expected``
        status (and ``record.revision``); False if the image has left that status or is gone.
        Tags and description are the owner's: an edit made meanwhile is kept, not overwritten."""
        read = replace(record, status=expected)  # as the caller read it
        return await self._rewrite(read, self._advance(record, expected)) is not None

    async def publish_counted(
        self, record: ImageRecord, expected: ImageStatus, *, max_images: int, max_bytes: int
    ) -> bool:
        """``replace_if_status``, adding the image to its owner's usage in the same
        transaction. QuotaExceeded if the usage has no room for it."""
        size = record.counted_bytes or 0
        usage = {
            "Update": {
                "TableName": self.table,
                "Key": _key(record.user_id, _USAGE_ID),
                "UpdateExpression": "ADD images :one, #bytes :size",
                "ConditionExpression": (
                    "attribute_not_exists(images) OR (images < :max_images AND #bytes <= :room)"
                ),
                "ExpressionAttributeNames": {"#bytes": "bytes"},
                "ExpressionAttributeValues": {
                    ":one": _n(1),
                    ":size": _n(size),
                    ":max_images": _n(max_images),
                    ":room": _n(max_bytes - size),
                },
            }
        }
        try:
            published = await self._rewrite(
                replace(record, status=expected),
                self._advance(record, expected),
                extra=lambda _: [usage],
            )
        except _Refused as refused:
            if refused.reasons[1:2] == ["ConditionalCheckFailed"]:
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
    ) -> ImageRecord | None:
        """Sets tags and/or description; None when the image does not exist."""

        def edit(current: ImageRecord) -> ImageRecord:
            return replace(
                current,
                updated_at=updated_at,
                tags=current.tags if tags is None else tags,
                description=current.description if description is None else description,
            )

        return await self._rewrite(await self.get(user_id, image_id), edit)

    async def mark_deleting(
        self, record: ImageRecord, *, updated_at: datetime
    ) -> ImageRecord | None:
        """Sets the deleting status; None when the image is already gone."""

        def mark(current: ImageRecord) -> ImageRecord:
            return replace(current, status=ImageStatus.DELETING, updated_at=updated_at)

        return await self._rewrite(record, mark)

    async def delete(self, record: ImageRecord, *, unchanged_only: bool = False) -> bool:
        """Deletes the image with its tag copies and, if it was counted, takes it off its
        owner's usage, in one transaction; already gone is done. ``unchanged_only``: only
        while the image is still at ``record``'s revision (maintenance, which must never act
        on a stale view). False when nothing was deleted."""

        def usage_back(current: ImageRecord) -> list[dict[str, Any]]:
            if current.counted_bytes is None:
                return []
            return [
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": _key(current.user_id, _USAGE_ID),
                        "UpdateExpression": "ADD images :minus_one, #bytes :minus_size",
                        "ExpressionAttributeNames": {"#bytes": "bytes"},
                        "ExpressionAttributeValues": {
                            ":minus_one": _n(-1),
                            ":minus_size": _n(-current.counted_bytes),
                        },
                    }
                }
            ]

        def delete(current: ImageRecord) -> _Delete | None:
            if unchanged_only and current.revision != record.revision:
                return None
            return _Delete.DELETE

        return await self._rewrite(record, delete, extra=usage_back) is not None

    async def waiting_since(
        self, status: ImageStatus, before: datetime
    ) -> AsyncIterator[ImageRecord]:
        """Images in ``status`` (processing or deleting) whose last change is older than
        ``before``, from the sparse attention index: what the sweeper has to finish."""
        assert status in NEEDS_ATTENTION
        for shard in range(ATTENTION_SHARDS):
            query: dict[str, Any] = {
                "TableName": self.table,
                "IndexName": ATTENTION_INDEX,
                "KeyConditionExpression": "attention_key = :key AND attention_sort < :before",
                "ExpressionAttributeValues": {
                    ":key": _s(f"{status.value}#{shard}"),
                    ":before": _s(format_timestamp(before)),
                },
            }
            while True:
                with backend_errors(BACKEND):
                    page = await self._client.query(**query)
                for item in page.get("Items", []):
                    yield from_item(item)
                if "LastEvaluatedKey" not in page:
                    break
                query["ExclusiveStartKey"] = page["LastEvaluatedKey"]

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

    async def put_many(self, records: list[ImageRecord]) -> None:
        """Stores new images and their tag copies in batches of 25 writes, unconditionally:
        a bulk load (imports, benchmarks) for ids nobody else is writing, never a request."""
        requests = [put for record in records for put in self._put_requests(record)[1]]
        for start in range(0, len(requests), _BATCH_WRITE_SIZE):
            await self._batch_write(requests[start : start + _BATCH_WRITE_SIZE])

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
        extra: Callable[[ImageRecord], list[dict[str, Any]]] | None = None,
    ) -> ImageRecord | None:
        """Applies ``change`` to ``current`` (the image as its caller read it) and stores the
        result; if another writer changed the image first, re-reads it and applies ``change``
        again. Returns the record as stored (the deleted one for a delete), or None when the
        image is gone or ``change`` leaves it alone."""
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
                writes[1:1] = extra(current)  # second, where cancellation reasons find it
            reasons = await self._apply(writes)
            if reasons is None:
                return current if stored is None else stored
            # The image's own condition failed, or DynamoDB saw two transactions collide:
            # another writer was first. Anything else (the usage's room) is the caller's to say.
            if reasons[0] != "ConditionalCheckFailed" and "TransactionConflict" not in reasons:
                raise _Refused(reasons)
            current = await self.get(current.user_id, current.image_id)
        raise Conflict("The image is being changed by others; try again.", code="concurrent_update")

    def _image_writes(
        self, old: ImageRecord | None, new: ImageRecord | None
    ) -> tuple[list[dict[str, Any]], ImageRecord | None]:
        """The writes taking the stored image from ``old`` (as read; None: absent) to ``new``
        (None: deleted), tag copies included, conditional on the image still being ``old``;
        and ``new`` as it will be stored (its next revision)."""
        if old is None:
            condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(image_id)"}
        else:
            condition = {
                "ConditionExpression": "#revision = :revision",
                "ExpressionAttributeNames": {"#revision": "revision"},
                "ExpressionAttributeValues": {":revision": _n(old.revision)},
            }
        subject = new or old
        assert subject is not None
        owner, image_id = subject.user_id, subject.image_id
        writes: list[dict[str, Any]] = []
        kept_tags: list[str] = []
        if new is None:
            writes.append(
                {"Delete": {"TableName": self.table, "Key": _key(owner, image_id), **condition}}
            )
        else:
            new = replace(new, revision=(old.revision if old else 0) + 1)
            item = to_item(new, dead_record_ttl=self._dead_record_ttl)
            writes.append({"Put": {"TableName": self.table, "Item": item, **condition}})
            writes.extend(
                {"Put": {"TableName": self.table, "Item": copy}} for copy in tag_copies(new, item)
            )
            kept_tags = indexed_tags(new)
        writes.extend(
            {"Delete": {"TableName": self.table, "Key": _key(owner, tag_copy_id(image_id, tag))}}
            for tag in (indexed_tags(old) if old else [])
            if tag not in kept_tags
        )
        return writes, new

    async def _apply(self, writes: list[dict[str, Any]]) -> list[str] | None:
        """Runs the writes as one: None when done, else why each was refused ("None" for
        those that were not), in order."""
        with backend_errors(BACKEND):
            try:
                if len(writes) > 1:
                    await self._client.transact_write_items(TransactItems=writes)  # type: ignore[arg-type]  # built as plain dicts above
                elif "Put" in writes[0]:
                    await self._client.put_item(**writes[0]["Put"])
                else:
                    await self._client.delete_item(**writes[0]["Delete"])
            except ClientError as exc:
                code = error_code(exc)
                if code == "ConditionalCheckFailedException":
                    return ["ConditionalCheckFailed"]
                if code == "TransactionCanceledException":
                    return [
                        str(reason.get("Code", "None"))
                        for reason in exc.response.get("CancellationReasons", [])
                    ] or ["None"]
                raise
        return None

    async def list_page(
        self, user_id: str, filters: ListFilter, limit: int, after: CursorPosition | None
    ) -> tuple[list[ImageRecord], CursorPosition | None]:
        """Up to ``limit`` matching records newest first, and where the next page starts.

        One tag, or else the status, picks the index, whose key condition does the selecting
        (with the date range); only a second tag, or a status next to a tag, is left to a filter
        that DynamoDB applies after it reads. Look one match ahead, so that a next position is
        returned only when another match exists.
        """
        values: Item = {}
        conditions: list[str] = []
        names: dict[str, str] = {}
        if filters.tags:
            index, partition, sort = TAG_INDEX, "tag_key", "tag_sort"
            values[":partition"] = _s(tag_key(user_id, filters.tags[0]))
            for number, tag in enumerate(filters.tags[1:]):
                conditions.append(f"contains(tags, :tag{number})")
                values[f":tag{number}"] = _s(tag)
            if filters.status is not None:
                conditions.append("#status = :status")
                values[":status"] = _s(filters.status.value)
                names["#status"] = "status"
        elif filters.status is not None:
            index, partition, sort = STATUS_INDEX, "status_key", "upload_sort"
            values[":partition"] = _s(status_key(user_id, filters.status))
        else:
            index, partition, sort = UPLOAD_TIME_INDEX, "user_id", "upload_sort"
            values[":partition"] = _s(user_id)

        key_condition = f"{partition} = :partition"
        if filters.start is not None:
            values[":lo"] = _s(format_timestamp(filters.start))
        if filters.end is not None:
            values[":hi"] = _s(format_timestamp(filters.end) + "#" + _AFTER_ANY_ID)
        if filters.start is not None and filters.end is not None:
            key_condition += f" AND {sort} BETWEEN :lo AND :hi"
        elif filters.start is not None:
            key_condition += f" AND {sort} >= :lo"
        elif filters.end is not None:
            key_condition += f" AND {sort} <= :hi"

        query: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": index,
            "ScanIndexForward": False,
            "KeyConditionExpression": key_condition,
            "ExpressionAttributeValues": values,
        }
        if conditions:
            query["FilterExpression"] = " AND ".join(conditions)
        if names:
            query["ExpressionAttributeNames"] = names
        if after is not None:
            # The position in this index of the cursor's image (any index: they sort alike).
            query["ExclusiveStartKey"] = {
                "user_id": _s(user_id),
                "image_id": _s(
                    tag_copy_id(after.image_id, filters.tags[0]) if filters.tags else after.image_id
                ),
                partition: values[":partition"],
                sort: _s(after.sort_key),
            }

        matches: list[dict[str, Any]] = []
        wanted = limit + 1
        with backend_errors(BACKEND):
            while len(matches) < wanted:
                missing = wanted - len(matches)
                query["Limit"] = max(missing, FILTERED_READ_BATCH) if conditions else missing
                response = await self._client.query(**query)
                matches.extend(response["Items"][:missing])
                if "LastEvaluatedKey" not in response:
                    break
                query["ExclusiveStartKey"] = response["LastEvaluatedKey"]

        records = [from_item(item) for item in matches[:limit]]
        if len(matches) <= limit:
            return records, None
        last = records[-1]
        return records, CursorPosition(sort_key=upload_sort_key(last), image_id=last.image_id)

    # -- idempotency keys: items in the caller's partition, outside every image listing -------

    async def get_idempotent(self, caller: str, key: str, now: datetime) -> IdempotentUpload | None:
        with backend_errors(BACKEND):
            response = await self._client.get_item(
                TableName=self.table,
                Key=_key(caller, _IDEMPOTENCY_PREFIX + key),
                ConsistentRead=True,
            )
        item = response.get("Item")
        # DynamoDB's TTL deletes late (hours); an expired key is already gone for clients.
        if item is None or int(item[EXPIRY_ATTRIBUTE]["N"]) <= int(now.timestamp()):
            return None
        return IdempotentUpload(
            fingerprint=item["fingerprint"]["S"],
            owner=item["owner"]["S"],
            image_id=item["target_image_id"]["S"],
            upload=PresignedUpload(
                url=item["url"]["S"],
                method=item["method"]["S"],
                headers={k: v["S"] for k, v in item["headers"]["M"].items()},
                fields={k: v["S"] for k, v in item["fields"]["M"].items()},
                expires_at=parse_timestamp(item["upload_expires_at"]["S"]),
            ),
        )

    async def put_idempotent(
        self, caller: str, key: str, entry: IdempotentUpload, now: datetime
    ) -> bool:
        """Records the answer to a keyed request; False if a live one exists (a twin won)."""
        upload = entry.upload
        item: Item = {
            **_key(caller, _IDEMPOTENCY_PREFIX + key),
            "fingerprint": _s(entry.fingerprint),
            "owner": _s(entry.owner),
            "target_image_id": _s(entry.image_id),
            "url": _s(upload.url),
            "method": _s(upload.method),
            "headers": {"M": {k: _s(v) for k, v in upload.headers.items()}},
            "fields": {"M": {k: _s(v) for k, v in upload.fields.items()}},
            "upload_expires_at": _s(format_timestamp(upload.expires_at)),
            EXPIRY_ATTRIBUTE: _n(int(upload.expires_at.timestamp())),
        }
        with backend_errors(BACKEND):
            try:
                await self._client.put_item(
                    TableName=self.table,
                    Item=item,
                    ConditionExpression="attribute_not_exists(image_id) OR #expiry <= :now",
                    ExpressionAttributeNames={"#expiry": EXPIRY_ATTRIBUTE},
                    ExpressionAttributeValues={":now": _n(int(now.timestamp()))},
                )
            except ClientError as exc:
                if _condition_failed(exc):
                    return False
                raise
        return True

    async def all_images(self) -> AsyncIterator[ImageRecord]:
        """Every image record in the table (a full scan: for maintenance, never for requests)."""
        with backend_errors(BACKEND):
            paginator = self._client.get_paginator("scan")
            async for page in paginator.paginate(
                TableName=self.table, FilterExpression="attribute_exists(upload_sort)"
            ):
                for item in page.get("Items", []):
                    yield from_item(item)

    async def legacy_images(self) -> AsyncIterator[LegacyImage]:
        """The image items the original service wrote (they have an object, never a status):
        a full scan, for ``image-service migrate`` and ``reconcile``, never for requests."""
        with backend_errors(BACKEND):
            paginator = self._client.get_paginator("scan")
            async for page in paginator.paginate(
                TableName=self.table,
                FilterExpression="attribute_exists(s3_key) AND attribute_not_exists(#status)",
                ExpressionAttributeNames={"#status": "status"},
            ):
                for item in page.get("Items", []):
                    yield legacy_from_item(item)

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
        reasons = await self._apply([{"Put": put}])
        return stored if reasons is None else None

    async def ping(self) -> None:
        with backend_errors(BACKEND):
            await self._client.describe_table(TableName=self.table)
