"""The attention index: images waiting in a status since some time (the sweeper's), the jobs
changes owe until the queue has them (the outbox, the relay's), and the feed of changes every
replica's event streams read."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from image_service.domain.models import (
    ImageRecord,
    ImageStatus,
    format_timestamp,
)
from image_service.domain.ports import FeedEntry, OwedJob
from image_service.storage.dynamo.codec import (
    ATTENTION_INDEX,
    BACKEND,
    FEED,
    FEED_EVENT,
    FEED_ORIGIN,
    FEED_RECORD,
    KEPT_JOB,
    KEPT_JOB_MARK,
    KEPT_JOBS,
    NEEDS_ATTENTION,
    Item,
    attention_keys,
    from_item,
    kept_job_key,
    string_value,
)
from image_service.storage.dynamo.table import Table
from image_service.storage.errors import backend_errors

# BatchWriteItem's most writes per call.
_DROPS_PER_CALL = 25


class Attention(Table):
    async def waiting_since(
        self, status: ImageStatus, before: datetime
    ) -> AsyncIterator[ImageRecord]:
        """Images in ``status`` (processing, deleting, trashed) whose last change (for the
        trash: since when) is older than ``before``, from the sparse attention index: what
        the sweeper has to finish, or purge."""
        assert status in NEEDS_ATTENTION
        async for item in self._needing_attention(attention_keys(status.value), before):
            yield from_item(item)

    async def owed_jobs(self, before: datetime) -> AsyncIterator[OwedJob]:
        """The outbox's jobs owed since before ``before``: those nobody sent (or dropped)."""
        async for item in self._needing_attention(attention_keys(KEPT_JOBS), before):
            yield OwedJob(
                item["user_id"]["S"],
                item["image_id"]["S"].removeprefix(KEPT_JOB_MARK),
                json.loads(item[KEPT_JOB]["S"]),
            )

    async def drop_jobs(self, jobs: Sequence[OwedJob]) -> None:
        """Takes jobs the queue has out of the outbox (gone already is no error)."""
        for start in range(0, len(jobs), _DROPS_PER_CALL):
            batch = [
                {"DeleteRequest": {"Key": kept_job_key(job.user_id, job.job_id)}}
                for job in jobs[start : start + _DROPS_PER_CALL]
            ]
            for attempt in range(5):
                if attempt:  # throttled: DynamoDB left some; ask again, backing off
                    await asyncio.sleep(0.05 * 2**attempt)
                with backend_errors(BACKEND):
                    response = await self._dynamodb.call(
                        "BatchWriteItem", {"RequestItems": {self.table: batch}}
                    )
                batch = response.get("UnprocessedItems", {}).get(self.table, [])
                if not batch:
                    break

    async def feed_since(self, since: datetime) -> list[FeedEntry]:
        """The feed's entries made at ``since`` or later, every shard's, oldest first. The
        index is eventually consistent: an entry may appear a moment after its change."""
        pages = await asyncio.gather(
            *(self._items(key, ">=", format_timestamp(since)) for key in attention_keys(FEED))
        )
        items = sorted((item for page in pages for item in page), key=_sorted_by)
        return [
            FeedEntry(
                entry_id=item["attention_sort"]["S"],
                event_type=item[FEED_EVENT]["S"],
                origin=item[FEED_ORIGIN]["S"],
                record=from_item(dict(item[FEED_RECORD]["M"])),
            )
            for item in items
        ]

    async def _items(self, key: str, relation: str, bound: str) -> list[Item]:
        return [item async for item in self._query(key, relation, bound)]

    async def _needing_attention(self, keys: list[str], before: datetime) -> AsyncIterator[Item]:
        """The attention index's items under each of ``keys``, sorted before ``before``."""
        for key in keys:
            async for item in self._query(key, "<", format_timestamp(before)):
                yield item

    async def _query(self, key: str, relation: str, bound: str) -> AsyncIterator[Item]:
        """The items under ``key`` whose sort key stands in ``relation`` to ``bound``."""
        query: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": ATTENTION_INDEX,
            "KeyConditionExpression": f"attention_key = :key AND attention_sort {relation} :bound",
            "ExpressionAttributeValues": {
                ":key": string_value(key),
                ":bound": string_value(bound),
            },
        }
        async for item in self._scan(query, query=True):
            yield item


def _sorted_by(item: Item) -> str:
    return item["attention_sort"]["S"]
