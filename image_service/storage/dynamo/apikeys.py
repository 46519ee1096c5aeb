"""API keys in the table (``domain/apikeys.py``).

Two items per key, written and removed together in one transaction:

- beside its owner's images, ``apikey#<key id>``: what ``GET /api-keys`` lists;
- in a partition of its own that no owner can have (``\\x1fapikey#<key id>``: a control
  character, which every subject refuses), what a request's key is looked up by, with the
  SHA-256 of its secret.

The owner's count of keys is kept on their usage item (``api_keys``), changed in the same
transaction, so the per-owner bound holds under concurrent creations.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from image_service.domain.apikeys import ApiKey, StoredKey
from image_service.domain.models import format_timestamp, parse_timestamp
from image_service.storage.dynamo.codec import (
    BACKEND,
    Item,
    item_key,
    string_value,
)
from image_service.storage.dynamo.table import Table
from image_service.storage.errors import backend_errors, error_code

_OWNED = "apikey#"
_LOOKUP = "\x1fapikey#"


def _lookup_key(key_id: str) -> Item:
    return item_key(f"{_LOOKUP}{key_id}", "key")


def _attributes(key: ApiKey) -> Item:
    item: Item = {
        "name": string_value(key.name),
        "scopes": {"L": [string_value(scope) for scope in key.scopes]},
        "created_at": string_value(format_timestamp(key.created_at)),
        "owner": string_value(key.owner),
    }
    if key.expires_at is not None:
        item["key_expires_at"] = string_value(format_timestamp(key.expires_at))
    return item


def _key(key_id: str, item: dict[str, Any]) -> ApiKey:
    def moment(name: str) -> datetime | None:
        value = item.get(name)
        return None if value is None else parse_timestamp(value["S"])

    created = moment("created_at")
    assert created is not None
    return ApiKey(
        key_id=key_id,
        owner=item["owner"]["S"],
        name=item["name"]["S"],
        scopes=tuple(scope["S"] for scope in item["scopes"]["L"]),
        created_at=created,
        expires_at=moment("key_expires_at"),
        last_used_at=moment("last_used_at"),
    )


class ApiKeyTable(Table):
    async def create_key(self, stored: StoredKey, *, max_keys: int) -> bool:
        key = stored.key
        attributes = _attributes(key)
        writes = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": {**item_key(key.owner, f"{_OWNED}{key.key_id}"), **attributes},
                    "ConditionExpression": "attribute_not_exists(image_id)",
                }
            },
            {
                "Put": {
                    "TableName": self.table,
                    "Item": {
                        **_lookup_key(key.key_id),
                        **attributes,
                        "secret_hash": string_value(stored.secret_hash),
                    },
                    "ConditionExpression": "attribute_not_exists(image_id)",
                }
            },
            self._count_write(key.owner, "api_keys", 1, below=max_keys),
        ]
        return await self._transact(writes)

    async def revoke_key(self, owner: str, key_id: str) -> bool:
        writes = [
            {
                "Delete": {
                    "TableName": self.table,
                    "Key": item_key(owner, f"{_OWNED}{key_id}"),
                    "ConditionExpression": "attribute_exists(image_id)",
                }
            },
            {"Delete": {"TableName": self.table, "Key": _lookup_key(key_id)}},
            self._count_write(owner, "api_keys", -1),
        ]
        return await self._transact(writes)

    async def owner_keys(self, owner: str) -> list[ApiKey]:
        return [
            _key(item["image_id"]["S"].removeprefix(_OWNED), item)
            async for item in self._owned(owner, _OWNED)
        ]

    async def key_by_id(self, key_id: str) -> StoredKey | None:
        item = await self._read_item(f"{_LOOKUP}{key_id}", "key")
        if item is None:
            return None
        return StoredKey(_key(key_id, item), item["secret_hash"]["S"])

    async def keys_used(self, uses: Sequence[tuple[str, str, datetime]]) -> None:
        for owner, key_id, used in uses:
            with backend_errors(BACKEND):
                try:
                    await self._dynamodb.call(
                        "UpdateItem",
                        {
                            "TableName": self.table,
                            "Key": item_key(owner, f"{_OWNED}{key_id}"),
                            "UpdateExpression": "SET last_used_at = :used",
                            "ConditionExpression": (
                                "attribute_exists(image_id) AND "
                                "(attribute_not_exists(last_used_at) OR last_used_at < :used)"
                            ),
                            "ExpressionAttributeValues": {
                                ":used": string_value(format_timestamp(used))
                            },
                        },
                    )
                except ClientError as exc:
                    if error_code(exc) != "ConditionalCheckFailedException":
                        raise  # revoked meanwhile, or a later use written: nothing to do
