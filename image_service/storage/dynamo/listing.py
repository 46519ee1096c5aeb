"""One owner's images a page at a time: which index answers which filter, and how a page is
read when a filter discards some of what the index holds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from image_service.domain.cursor import CursorPosition
from image_service.domain.models import (
    ImageRecord,
    ImageStatus,
    ListFilter,
    format_timestamp,
)
from image_service.storage.dynamo.codec import (
    BACKEND,
    STATUS_INDEX,
    TAG_INDEX,
    TAKEN_INDEX,
    TRASH_INDEX,
    UPLOAD_TIME_INDEX,
    Item,
    from_item,
    status_key,
    string_value,
    tag_copy_id,
    tag_key,
    taken_sort_key,
    trash_sort_key,
    upload_sort_key,
)
from image_service.storage.dynamo.table import Table
from image_service.storage.errors import backend_errors

# Items read per query while a filter discards some: fewer round trips when matches are sparse,
# while the page itself is still cut at the requested size.
FILTERED_READ_BATCH = 100
# Sorts after every character of an image id, so "<time>#~" bounds all ids at that time.
_AFTER_ANY_ID = "~"


class ImageListing(Table):
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
        if filters.status is ImageStatus.TRASHED:
            return await self._trash_page(user_id, filters, limit, after)
        if filters.ordered_by_taken:
            return await self._taken_page(user_id, filters, limit, after)
        if filters.tags:
            index, partition, sort = TAG_INDEX, "tag_key", "tag_sort"
            values[":partition"] = string_value(tag_key(user_id, filters.tags[0]))
            for number, tag in enumerate(filters.tags[1:]):
                conditions.append(f"contains(tags, :tag{number})")
                values[f":tag{number}"] = string_value(tag)
            if filters.status is not None:
                conditions.append("#status = :status")
                values[":status"] = string_value(filters.status.value)
                names["#status"] = "status"
        elif filters.status is not None:
            index, partition, sort = STATUS_INDEX, "status_key", "upload_sort"
            values[":partition"] = string_value(status_key(user_id, filters.status))
        else:
            index, partition, sort = UPLOAD_TIME_INDEX, "user_id", "upload_sort"
            values[":partition"] = string_value(user_id)

        key_condition = f"{partition} = :partition"
        if filters.start is not None:
            values[":lo"] = string_value(format_timestamp(filters.start))
        if filters.end is not None:
            values[":hi"] = string_value(format_timestamp(filters.end) + "#" + _AFTER_ANY_ID)
        if filters.start is not None and filters.end is not None:
            key_condition += f" AND {sort} BETWEEN :lo AND :hi"
        elif filters.start is not None:
            key_condition += f" AND {sort} >= :lo"
        elif filters.end is not None:
            key_condition += f" AND {sort} <= :hi"

        query = self._descending(index, key_condition, values, conditions, names)
        if after is not None:
            # The position in this index of the cursor's image (any index: they sort alike).
            query["ExclusiveStartKey"] = {
                "user_id": string_value(user_id),
                "image_id": string_value(
                    tag_copy_id(after.image_id, filters.tags[0]) if filters.tags else after.image_id
                ),
                partition: values[":partition"],
                sort: string_value(after.sort_key),
            }
        return await self._read_page(
            query, limit, filtered=bool(conditions), sort_key=upload_sort_key
        )

    async def _trash_page(
        self, user_id: str, filters: ListFilter, limit: int, after: CursorPosition | None
    ) -> tuple[list[ImageRecord], CursorPosition | None]:
        """The trash, newest trashed first, from the sparse ``by_trash`` index."""
        owner = string_value(user_id)
        start = None
        if after is not None:
            start = {
                "user_id": owner,
                "image_id": string_value(after.image_id),
                "trash_key": owner,
                "trash_sort": string_value(after.sort_key),
            }
        return await self._filtered_page(
            TRASH_INDEX,
            "trash_key = :owner",
            {":owner": owner},
            filters,
            limit,
            start=start,
            sort_key=trash_sort_key,
            by_status=False,  # the index is one status
        )

    async def _taken_page(
        self, user_id: str, filters: ListFilter, limit: int, after: CursorPosition | None
    ) -> tuple[list[ImageRecord], CursorPosition | None]:
        """Newest taken first, from the sparse ``by_taken`` index (images whose EXIF says
        when): the taken range is its key condition."""
        owner = string_value(user_id)
        values: Item = {":owner": owner}
        key_condition = "user_id = :owner"
        if filters.taken_from is not None:
            values[":lo"] = string_value(format_timestamp(filters.taken_from))
        if filters.taken_to is not None:
            values[":hi"] = string_value(format_timestamp(filters.taken_to) + "#" + _AFTER_ANY_ID)
        if ":lo" in values and ":hi" in values:
            key_condition += " AND taken_sort BETWEEN :lo AND :hi"
        elif ":lo" in values:
            key_condition += " AND taken_sort >= :lo"
        elif ":hi" in values:
            key_condition += " AND taken_sort <= :hi"
        start = None
        if after is not None:
            start = {
                "user_id": owner,
                "image_id": string_value(after.image_id),
                "taken_sort": string_value(after.sort_key),
            }
        return await self._filtered_page(
            TAKEN_INDEX,
            key_condition,
            values,
            filters,
            limit,
            start=start,
            sort_key=lambda record: taken_sort_key(record) or "",
            by_status=True,
        )

    async def _filtered_page(
        self,
        index: str,
        key_condition: str,
        values: Item,
        filters: ListFilter,
        limit: int,
        *,
        start: Item | None,
        sort_key: Callable[[ImageRecord], str],
        by_status: bool,
    ) -> tuple[list[ImageRecord], CursorPosition | None]:
        """A page of an index that is keyed by neither tag nor status nor upload time: those
        filters are applied after the read (FilterExpression)."""
        conditions: list[str] = []
        names: dict[str, str] = {}
        for number, tag in enumerate(filters.tags):
            conditions.append(f"contains(tags, :tag{number})")
            values[f":tag{number}"] = string_value(tag)
        if by_status and filters.status is not None:
            conditions.append("#status = :status")
            values[":status"] = string_value(filters.status.value)
            names["#status"] = "status"
        if filters.start is not None:
            conditions.append("upload_time >= :start")
            values[":start"] = string_value(format_timestamp(filters.start))
        if filters.end is not None:
            conditions.append("upload_time <= :end")
            values[":end"] = string_value(format_timestamp(filters.end))
        query = self._descending(index, key_condition, values, conditions, names)
        if start is not None:
            query["ExclusiveStartKey"] = start
        return await self._read_page(query, limit, filtered=bool(conditions), sort_key=sort_key)

    def _descending(
        self,
        index: str,
        key_condition: str,
        values: Item,
        conditions: list[str],
        names: dict[str, str],
    ) -> dict[str, Any]:
        """A query of ``index``, newest first, its ``conditions`` applied after the read."""
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
        return query

    async def _read_page(
        self,
        query: dict[str, Any],
        limit: int,
        *,
        filtered: bool,
        sort_key: Callable[[ImageRecord], str],
    ) -> tuple[list[ImageRecord], CursorPosition | None]:
        """Up to ``limit`` matches of ``query`` and where the next page starts (looking one
        match ahead, so that a next position is given only when another match exists)."""
        matches: list[dict[str, Any]] = []
        wanted = limit + 1
        with backend_errors(BACKEND):
            while len(matches) < wanted:
                missing = wanted - len(matches)
                query["Limit"] = max(missing, FILTERED_READ_BATCH) if filtered else missing
                response = await self._dynamodb.call("Query", query)
                matches.extend(response["Items"][:missing])
                if "LastEvaluatedKey" not in response:
                    break
                query["ExclusiveStartKey"] = response["LastEvaluatedKey"]

        records = [from_item(item) for item in matches[:limit]]
        if len(matches) <= limit:
            return records, None
        last = records[-1]
        return records, CursorPosition(sort_key=sort_key(last), image_id=last.image_id)

    async def fetching_count(self, user_id: str, *, up_to: int) -> int:
        """How many of the owner's imports are being fetched, counted up to ``up_to`` (one
        query of the status index's fetching partition, keys only)."""
        query: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": STATUS_INDEX,
            "KeyConditionExpression": "status_key = :partition",
            "ExpressionAttributeValues": {
                ":partition": string_value(status_key(user_id, ImageStatus.FETCHING))
            },
            "Select": "COUNT",
            "Limit": up_to,
        }
        with backend_errors(BACKEND):
            answer = await self._dynamodb.call("Query", query)
        return int(answer.get("Count", 0))

    async def open_multipart(self, user_id: str) -> list[ImageRecord]:
        """The owner's pending multipart uploads (their parts take storage before anything is
        counted): the status index's pending partition, the others filtered out as read."""
        query = self._descending(
            STATUS_INDEX,
            "status_key = :partition",
            {":partition": string_value(status_key(user_id, ImageStatus.PENDING))},
            ["attribute_exists(upload_id)"],
            {},
        )
        return [from_item(item) async for item in self._scan(query, query=True)]
