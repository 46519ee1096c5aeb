"""Albums in the table (``domain/albums.py``): one item per album beside its owner's images
(``album#<id>``), and one membership item per image in it (``albumimg#<id>#<upload sort>``,
written with the image's record: ``records.py``). The owner's count of albums is kept on their
usage item (``albums``), changed in the same transaction as the album, for the per-owner bound.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from image_service.domain.albums import Album
from image_service.domain.models import format_timestamp, parse_timestamp
from image_service.storage.dynamo.codec import (
    ALBUM_MARK,
    BACKEND,
    Item,
    album_id_key,
    item_key,
    membership_prefix,
    string_value,
)
from image_service.storage.dynamo.table import Table
from image_service.storage.errors import backend_errors, error_code


def _album_item(album: Album) -> Item:
    item: Item = {
        **item_key(album.owner, album_id_key(album.album_id)),
        "name": string_value(album.name),
        "description": string_value(album.description),
        "created_at": string_value(format_timestamp(album.created_at)),
        "updated_at": string_value(format_timestamp(album.updated_at)),
    }
    if album.cover is not None:
        item["cover"] = string_value(album.cover)
    return item


def _album(item: dict[str, Any]) -> Album:
    return Album(
        album_id=item["image_id"]["S"].removeprefix(ALBUM_MARK),
        owner=item["user_id"]["S"],
        name=item["name"]["S"],
        description=item["description"]["S"],
        cover=item["cover"]["S"] if "cover" in item else None,
        created_at=parse_timestamp(item["created_at"]["S"]),
        updated_at=parse_timestamp(item["updated_at"]["S"]),
    )


class AlbumTable(Table):
    async def create_album(self, album: Album, *, max_albums: int) -> bool:
        """False when the owner holds ``max_albums`` already."""
        writes = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": _album_item(album),
                    "ConditionExpression": "attribute_not_exists(image_id)",
                }
            },
            self._count_write(album.owner, "albums", 1, below=max_albums),
        ]
        return await self._transact(writes)

    async def album(self, owner: str, album_id: str) -> Album | None:
        item = await self._read_item(owner, album_id_key(album_id))
        return None if item is None else _album(item)

    async def owner_albums(self, owner: str) -> list[Album]:
        return [_album(item) async for item in self._owned(owner, ALBUM_MARK)]

    async def replace_album(self, album: Album) -> bool:
        """Stores ``album``'s new name, description and cover; False when it is gone."""
        with backend_errors(BACKEND):
            try:
                await self._dynamodb.call(
                    "PutItem",
                    {
                        "TableName": self.table,
                        "Item": _album_item(album),
                        "ConditionExpression": "attribute_exists(image_id)",
                    },
                )
            except ClientError as exc:
                if error_code(exc) == "ConditionalCheckFailedException":
                    return False
                raise
        return True

    async def delete_album(self, owner: str, album_id: str) -> bool:
        """False when there was no such album."""
        writes = [
            {
                "Delete": {
                    "TableName": self.table,
                    "Key": item_key(owner, album_id_key(album_id)),
                    "ConditionExpression": "attribute_exists(image_id)",
                }
            },
            self._count_write(owner, "albums", -1),
        ]
        return await self._transact(writes)

    async def album_members(
        self, owner: str, album_id: str, limit: int, after: str | None
    ) -> tuple[list[str], str | None]:
        """A page of the album's image ids, newest upload first, after the upload sort key
        ``after``; and the last one's sort key if more may follow."""
        prefix = membership_prefix(album_id)
        query: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "user_id = :owner AND begins_with(image_id, :album)",
            "ExpressionAttributeValues": {
                ":owner": string_value(owner),
                ":album": string_value(prefix),
            },
            "ScanIndexForward": False,
            "Limit": limit + 1,  # one more: whether a next page exists
            "ConsistentRead": True,
        }
        if after is not None:
            query["ExclusiveStartKey"] = item_key(owner, prefix + after)
        with backend_errors(BACKEND):
            page = await self._dynamodb.call("Query", query)
        items = page.get("Items", [])
        members = [item["album_image"]["S"] for item in items[:limit]]
        more = len(items) > limit
        last = items[limit - 1]["image_id"]["S"].removeprefix(prefix) if more else None
        return members, last
