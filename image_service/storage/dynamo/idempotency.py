"""Idempotency keys: what a keyed upload-URL request answered, kept in the caller's partition
(outside every image listing) until its URL expires, to answer its retries the same."""

from __future__ import annotations

from datetime import datetime

from botocore.exceptions import ClientError

from image_service.domain.models import (
    IdempotentUpload,
    PresignedUpload,
    format_timestamp,
    parse_timestamp,
)
from image_service.storage.dynamo.calls import TableCalls
from image_service.storage.dynamo.codec import (
    BACKEND,
    EXPIRY_ATTRIBUTE,
    Item,
    item_key,
    number_value,
    string_value,
)
from image_service.storage.errors import backend_errors, error_code

_IDEMPOTENCY_PREFIX = "idempotency#"


class IdempotencyStore:
    def __init__(self, dynamodb: TableCalls, table: str) -> None:
        self._dynamodb = dynamodb
        self._table = table

    async def get(self, caller: str, key: str, now: datetime) -> IdempotentUpload | None:
        with backend_errors(BACKEND):
            response = await self._dynamodb.call(
                "GetItem",
                {
                    "TableName": self._table,
                    "Key": item_key(caller, _IDEMPOTENCY_PREFIX + key),
                    "ConsistentRead": True,
                },
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

    async def put(self, caller: str, key: str, entry: IdempotentUpload, now: datetime) -> bool:
        """Records the answer to a keyed request; False if a live one exists (a twin won)."""
        upload = entry.upload
        item: Item = {
            **item_key(caller, _IDEMPOTENCY_PREFIX + key),
            "fingerprint": string_value(entry.fingerprint),
            "owner": string_value(entry.owner),
            "target_image_id": string_value(entry.image_id),
            "url": string_value(upload.url),
            "method": string_value(upload.method),
            "headers": {"M": {k: string_value(v) for k, v in upload.headers.items()}},
            "fields": {"M": {k: string_value(v) for k, v in upload.fields.items()}},
            "upload_expires_at": string_value(format_timestamp(upload.expires_at)),
            EXPIRY_ATTRIBUTE: number_value(int(upload.expires_at.timestamp())),
        }
        with backend_errors(BACKEND):
            try:
                await self._dynamodb.call(
                    "PutItem",
                    {
                        "TableName": self._table,
                        "Item": item,
                        "ConditionExpression": "attribute_not_exists(image_id) OR #expiry <= :now",
                        "ExpressionAttributeNames": {"#expiry": EXPIRY_ATTRIBUTE},
                        "ExpressionAttributeValues": {":now": number_value(int(now.timestamp()))},
                    },
                )
            except ClientError as exc:
                if error_code(exc) == "ConditionalCheckFailedException":
                    return False
                raise
        return True
