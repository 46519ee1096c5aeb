"""Image metadata in DynamoDB.

Table: partition key ``user_id``, sort key ``image_id`` (the original service's model), plus the
global secondary index ``by_upload_time`` (``user_id``, ``upload_sort`` = upload time then image
id) that lists a user's images newest first and answers date ranges with a key condition.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from image_service.cursor import CursorPosition
from image_service.errors import QuotaExceeded
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
    if dead_record_ttl is not None and record.status in _EXPIRING:
        item[EXPIRY_ATTRIBUTE] = _n(int(record.updated_at.timestamp()) + dead_record_ttl)
    item.update({name: _n(value) for name, value in optional_numbers.items() if value is not None})
    return item


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
        image_id=item["image_id"]["S"],
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
    )


def _key(user_id: str, image_id: str) -> Item:
    return {"user_id": _s(user_id), "image_id": _s(image_id)}


def _condition_failed(exc: ClientError) -> bool:
    return error_code(exc) == "ConditionalCheckFailedException"


class ImageRepository:
    def __init__(
        self, client: DynamoDBClient, table: str, *, dead_record_ttl: int | None = None
    ) -> None:
        self._client = client
        self.table = table
        # Pending and rejected records are deleted by DynamoDB this long after their last change.
        self._dead_record_ttl = dead_record_ttl

    async def create(self, record: ImageRecord) -> None:
        with backend_errors(BACKEND):
            await self._client.put_item(
                TableName=self.table,
                Item=to_item(record, dead_record_ttl=self._dead_record_ttl),
                ConditionExpression="attribute_not_exists(image_id)",
            )

    async def get(self, user_id: str, image_id: str) -> ImageRecord | None:
        with backend_errors(BACKEND):
            response = await self._client.get_item(
                TableName=self.table, Key=_key(user_id, image_id), ConsistentRead=True
            )
        item = response.get("Item")
        return None if item is None else from_item(item)

    async def replace_if_status(self, record: ImageRecord, expected: ImageStatus) -> bool:
        """Writes the record if the stored one still has ``expected`` status; False if not."""
        with backend_errors(BACKEND):
            try:
                await self._client.put_item(
                    TableName=self.table,
                    Item=to_item(record, dead_record_ttl=self._dead_record_ttl),
                    ConditionExpression="#status = :expected",
                    ExpressionAttributeNames={"#status": "status"},
                    ExpressionAttributeValues={":expected": _s(expected.value)},
                )
            except ClientError as exc:
                if _condition_failed(exc):
                    return False
                raise
        return True

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
        assignments = ["updated_at = :updated_at"]
        values: Item = {":updated_at": _s(format_timestamp(updated_at))}
        if tags is not None:
            assignments.append("tags = :tags")
            values[":tags"] = {"L": [_s(tag) for tag in tags]}
        if description is not None:
            assignments.append("description = :description")
            values[":description"] = _s(description)
        with backend_errors(BACKEND):
            try:
                response = await self._client.update_item(
                    TableName=self.table,
                    Key=_key(user_id, image_id),
                    UpdateExpression="SET " + ", ".join(assignments),
                    ConditionExpression="attribute_exists(image_id)",
                    ExpressionAttributeValues=values,
                    ReturnValues="ALL_NEW",
                )
            except ClientError as exc:
                if _condition_failed(exc):
                    return None
                raise
        return from_item(response["Attributes"])

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

    async def publish_counted(
        self, record: ImageRecord, expected: ImageStatus, *, max_images: int, max_bytes: int
    ) -> bool:
        """Writes the record (if still ``expected``) and adds it to its owner's usage, in one
        transaction. False if the record changed; QuotaExceeded if the usage has no room."""
        size = record.counted_bytes or 0
        transaction: list[Any] = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": to_item(record, dead_record_ttl=self._dead_record_ttl),
                    "ConditionExpression": "#status = :expected",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": {":expected": _s(expected.value)},
                }
            },
            {
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
            },
        ]
        with backend_errors(BACKEND):
            try:
                await self._client.transact_write_items(TransactItems=transaction)
            except ClientError as exc:
                if error_code(exc) != "TransactionCanceledException":
                    raise
                reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
                if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                    raise QuotaExceeded(
                        "This upload would exceed the owner's quota.",
                        details={"max_images": max_images, "max_bytes": max_bytes},
                    ) from None
                if reasons and reasons[0] == "ConditionalCheckFailed":
                    return False
                raise
        return True

    async def delete_counted(self, record: ImageRecord) -> None:
        """Deletes the record and, if it was counted, takes it off its owner's usage."""
        if record.counted_bytes is None:
            await self.delete(record.user_id, record.image_id)
            return
        with backend_errors(BACKEND):
            try:
                await self._client.transact_write_items(
                    TransactItems=[
                        {
                            "Delete": {
                                "TableName": self.table,
                                "Key": _key(record.user_id, record.image_id),
                                "ConditionExpression": "attribute_exists(image_id)",
                            }
                        },
                        {
                            "Update": {
                                "TableName": self.table,
                                "Key": _key(record.user_id, _USAGE_ID),
                                "UpdateExpression": "ADD images :minus_one, #bytes :minus_size",
                                "ExpressionAttributeNames": {"#bytes": "bytes"},
                                "ExpressionAttributeValues": {
                                    ":minus_one": _n(-1),
                                    ":minus_size": _n(-record.counted_bytes),
                                },
                            }
                        },
                    ]
                )
            except ClientError as exc:
                if error_code(exc) != "TransactionCanceledException":
                    raise
                # Already deleted (a concurrent retry): its usage was taken off then.

    async def mark_deleting(self, user_id: str, image_id: str, *, updated_at: datetime) -> bool:
        """Sets the deleting status; False when the record is already gone."""
        with backend_errors(BACKEND):
            try:
                await self._client.update_item(
                    TableName=self.table,
                    Key=_key(user_id, image_id),
                    UpdateExpression="SET #status = :deleting, updated_at = :updated_at",
                    ConditionExpression="attribute_exists(image_id)",
                    ExpressionAttributeNames={"#status": "status"},
                    ExpressionAttributeValues={
                        ":deleting": _s(ImageStatus.DELETING.value),
                        ":updated_at": _s(format_timestamp(updated_at)),
                    },
                )
            except ClientError as exc:
                if _condition_failed(exc):
                    return False
                raise
        return True

    async def delete(self, user_id: str, image_id: str) -> None:
        with backend_errors(BACKEND):
            await self._client.delete_item(TableName=self.table, Key=_key(user_id, image_id))

    async def list_page(
        self, user_id: str, filters: ListFilter, limit: int, after: CursorPosition | None
    ) -> tuple[list[ImageRecord], CursorPosition | None]:
        """Up to ``limit`` matching records newest first, and where the next page starts.

        Filters are applied by DynamoDB after it reads, so one query may return fewer matches
        than asked for: keep reading until the page is full or the index is exhausted, and look
        one match ahead so that a next position is returned only when another match exists.
        """
        query: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": UPLOAD_TIME_INDEX,
            "ScanIndexForward": False,
        }
        key_condition = ["user_id = :owner"]
        values: Item = {":owner": _s(user_id)}
        if filters.start is not None:
            values[":lo"] = _s(format_timestamp(filters.start))
        if filters.end is not None:
            values[":hi"] = _s(format_timestamp(filters.end) + "#" + _AFTER_ANY_ID)
        if filters.start is not None and filters.end is not None:
            key_condition.append("upload_sort BETWEEN :lo AND :hi")
        elif filters.start is not None:
            key_condition.append("upload_sort >= :lo")
        elif filters.end is not None:
            key_condition.append("upload_sort <= :hi")
        query["KeyConditionExpression"] = " AND ".join(key_condition)

        conditions = []
        if filters.status is not None:
            conditions.append("#status = :status")
            values[":status"] = _s(filters.status.value)
            query["ExpressionAttributeNames"] = {"#status": "status"}
        for index, tag in enumerate(filters.tags):
            conditions.append(f"contains(tags, :tag{index})")
            values[f":tag{index}"] = _s(tag)
        if conditions:
            query["FilterExpression"] = " AND ".join(conditions)
        query["ExpressionAttributeValues"] = values

        if after is not None:
            query["ExclusiveStartKey"] = {
                "user_id": _s(user_id),
                "image_id": _s(after.image_id),
                "upload_sort": _s(after.sort_key),
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

    async def ping(self) -> None:
        with backend_errors(BACKEND):
            await self._client.describe_table(TableName=self.table)
