"""The sweeper's index: images waiting in a status since some time, and the jobs the queue
refused, kept in the table until the sweeper queues them again."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from image_service.domain.models import (
    ImageRecord,
    ImageStatus,
    format_timestamp,
)
from image_service.storage.dynamo.codec import (
    ATTENTION_INDEX,
    BACKEND,
    KEPT_JOB,
    KEPT_JOBS,
    NEEDS_ATTENTION,
    Item,
    attention_keys,
    from_item,
    item_key,
    kept_job_item,
    string_value,
)
from image_service.storage.dynamo.table import Table
from image_service.storage.errors import backend_errors


@dataclass(frozen=True, slots=True)
class KeptJob:
    """A job the queue refused, kept in the table until the sweeper queues it again."""

    user_id: str
    item_id: str
    job: dict[str, Any]


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

    async def keep_job(self, user_id: str, job: dict[str, Any], *, now: datetime) -> None:
        """Keeps ``job``, which the queue refused, beside its owner's images, for the sweeper
        to queue again (``kept_jobs``)."""
        body = json.dumps(job, separators=(",", ":"))
        item = kept_job_item(user_id, uuid.uuid4().hex, body, kept_at=now)
        with backend_errors(BACKEND):
            await self._dynamodb.call("PutItem", {"TableName": self.table, "Item": item})

    async def kept_jobs(self, before: datetime) -> AsyncIterator[KeptJob]:
        """The jobs kept before ``before`` (``keep_job``), oldest first per shard."""
        async for item in self._needing_attention(attention_keys(KEPT_JOBS), before):
            yield KeptJob(
                item["user_id"]["S"], item["image_id"]["S"], json.loads(item[KEPT_JOB]["S"])
            )

    async def drop_kept_job(self, kept: KeptJob) -> None:
        """Forgets a kept job once the queue has taken it."""
        with backend_errors(BACKEND):
            await self._dynamodb.call(
                "DeleteItem", {"TableName": self.table, "Key": item_key(kept.user_id, kept.item_id)}
            )

    async def _needing_attention(self, keys: list[str], before: datetime) -> AsyncIterator[Item]:
        """The attention index's items under each of ``keys``, sorted before ``before``."""
        for key in keys:
            query: dict[str, Any] = {
                "TableName": self.table,
                "IndexName": ATTENTION_INDEX,
                "KeyConditionExpression": "attention_key = :key AND attention_sort < :before",
                "ExpressionAttributeValues": {
                    ":key": string_value(key),
                    ":before": string_value(format_timestamp(before)),
                },
            }
            while True:
                with backend_errors(BACKEND):
                    page = await self._dynamodb.call("Query", query)
                for item in page.get("Items", []):
                    yield item
                if "LastEvaluatedKey" not in page:
                    break
                query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
