"""Share links in the table (``domain/shares.py``).

Two items per link, written together: beside its owner's images, ``share#<id>`` (what
``GET /shares`` lists, with its view count); and in a partition no owner can have
(``\\x1fshare#<id>``), what a request's link is read by, with the SHA-256 of its secret and its
password's scrypt. Revoking deletes the first and marks the second revoked (so the link answers
410, not 404), which DynamoDB removes a month after the link's expiry. The owner's count of
links is ``shares`` on their usage item.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from image_service.domain.models import format_timestamp, parse_timestamp
from image_service.domain.shares import Share, ShareTarget, StoredShare
from image_service.storage.dynamo.codec import (
    BACKEND,
    EXPIRY_ATTRIBUTE,
    Item,
    item_key,
    number_value,
    string_value,
)
from image_service.storage.dynamo.table import Table
from image_service.storage.errors import backend_errors, error_code

_OWNED = "share#"
_LOOKUP = "\x1fshare#"
_KEPT_AFTER_EXPIRY = timedelta(days=30)


def _lookup_key(share_id: str) -> Item:
    return item_key(f"{_LOOKUP}{share_id}", "share")


def _owned_key(owner: str, share_id: str) -> Item:
    return item_key(owner, f"{_OWNED}{share_id}")


def _attributes(share: Share) -> Item:
    target: dict[str, Any] = {}
    if share.target.image_ids:
        target["image_ids"] = {"L": [string_value(i) for i in share.target.image_ids]}
    if share.target.album_id is not None:
        target["album_id"] = string_value(share.target.album_id)
    if share.target.tag is not None:
        target["tag"] = string_value(share.target.tag)
    item: Item = {
        "owner": string_value(share.owner),
        "target": {"M": target},
        "created_at": string_value(format_timestamp(share.created_at)),
        "share_expires_at": string_value(format_timestamp(share.expires_at)),
        "allow_download": {"BOOL": share.allow_download},
        "presets": {"L": [string_value(p) for p in share.presets]},
        "has_password": {"BOOL": share.has_password},
    }
    if share.max_views is not None:
        item["max_views"] = number_value(share.max_views)
    return item


def _share(share_id: str, item: dict[str, Any]) -> Share:
    target = item["target"]["M"]
    return Share(
        share_id=share_id,
        owner=item["owner"]["S"],
        target=ShareTarget(
            image_ids=tuple(i["S"] for i in target.get("image_ids", {}).get("L", [])),
            album_id=target["album_id"]["S"] if "album_id" in target else None,
            tag=target["tag"]["S"] if "tag" in target else None,
        ),
        created_at=parse_timestamp(item["created_at"]["S"]),
        expires_at=parse_timestamp(item["share_expires_at"]["S"]),
        allow_download=item["allow_download"]["BOOL"],
        presets=tuple(p["S"] for p in item["presets"]["L"]),
        max_views=int(item["max_views"]["N"]) if "max_views" in item else None,
        views=int(item.get("views", {}).get("N", 0)),
        has_password=item["has_password"]["BOOL"],
        revoked="revoked_at" in item,
    )


class ShareTable(Table):
    async def create_share(self, stored: StoredShare, *, max_shares: int) -> bool:
        share = stored.share
        attributes = _attributes(share)
        lookup: Item = {
            **_lookup_key(share.share_id),
            **attributes,
            "secret_hash": string_value(stored.secret_hash),
            EXPIRY_ATTRIBUTE: number_value(
                int((share.expires_at + _KEPT_AFTER_EXPIRY).timestamp())
            ),
        }
        if stored.password_hash is not None:
            lookup["password_hash"] = string_value(stored.password_hash)
        writes = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": {**_owned_key(share.owner, share.share_id), **attributes},
                    "ConditionExpression": "attribute_not_exists(image_id)",
                }
            },
            {
                "Put": {
                    "TableName": self.table,
                    "Item": lookup,
                    "ConditionExpression": "attribute_not_exists(image_id)",
                }
            },
            self._count_write(share.owner, "shares", 1, below=max_shares),
        ]
        return await self._transact(writes)

    async def share_by_id(self, share_id: str) -> StoredShare | None:
        item = await self._read_item(f"{_LOOKUP}{share_id}", "share")
        if item is None:
            return None
        return StoredShare(
            _share(share_id, item),
            item["secret_hash"]["S"],
            item["password_hash"]["S"] if "password_hash" in item else None,
        )

    async def owner_shares(self, owner: str) -> list[Share]:
        return [
            _share(item["image_id"]["S"].removeprefix(_OWNED), item)
            async for item in self._owned(owner, _OWNED)
        ]

    async def revoke_share(self, owner: str, share_id: str, *, at: datetime) -> bool:
        writes = [
            {
                "Delete": {
                    "TableName": self.table,
                    "Key": _owned_key(owner, share_id),
                    "ConditionExpression": "attribute_exists(image_id)",
                }
            },
            {
                "Update": {
                    "TableName": self.table,
                    "Key": _lookup_key(share_id),
                    "UpdateExpression": "SET revoked_at = :at",
                    "ConditionExpression": "attribute_exists(image_id)",
                    "ExpressionAttributeValues": {":at": string_value(format_timestamp(at))},
                }
            },
            self._count_write(owner, "shares", -1),
        ]
        return await self._transact(writes)

    async def count_view(self, share: Share, *, max_views: int) -> bool:
        with backend_errors(BACKEND):
            try:
                await self._dynamodb.call(
                    "UpdateItem",
                    {
                        "TableName": self.table,
                        "Key": _owned_key(share.owner, share.share_id),
                        "UpdateExpression": "ADD #views :one",
                        "ConditionExpression": (
                            "attribute_exists(image_id) AND "
                            "(attribute_not_exists(#views) OR #views < :max)"
                        ),
                        "ExpressionAttributeNames": {"#views": "views"},
                        "ExpressionAttributeValues": {
                            ":one": number_value(1),
                            ":max": number_value(max_views),
                        },
                    },
                )
            except ClientError as exc:
                if error_code(exc) == "ConditionalCheckFailedException":
                    return False
                raise
        return True

    async def add_views(self, counts: Sequence[tuple[str, str, int]]) -> None:
        for owner, share_id, views in counts:
            with backend_errors(BACKEND):
                try:
                    await self._dynamodb.call(
                        "UpdateItem",
                        {
                            "TableName": self.table,
                            "Key": _owned_key(owner, share_id),
                            "UpdateExpression": "ADD #views :views",
                            "ConditionExpression": "attribute_exists(image_id)",
                            "ExpressionAttributeNames": {"#views": "views"},
                            "ExpressionAttributeValues": {":views": number_value(views)},
                        },
                    )
                except ClientError as exc:
                    if error_code(exc) != "ConditionalCheckFailedException":
                        raise  # revoked meanwhile: its views go with it
