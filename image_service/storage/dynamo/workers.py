"""The workers' heartbeats: each worker's processing fingerprint, and when it last said so.

One item per worker in a partition no owner can have (its name starts with a control
character, which ``auth.tokens.valid_subject`` refuses in every subject), so no listing,
scan of images or user's request ever meets them. DynamoDB removes an item a day after its
worker's last beat (TTL); a worker stopped cleanly removes its own at once.
"""

from __future__ import annotations

import socket
from datetime import datetime

from image_service.domain.models import format_timestamp, parse_timestamp
from image_service.domain.ports import WorkerBeat
from image_service.storage.dynamo.codec import (
    BACKEND,
    EXPIRY_ATTRIBUTE,
    item_key,
    number_value,
    string_value,
)
from image_service.storage.dynamo.table import Table
from image_service.storage.errors import backend_errors

WORKERS_PARTITION = "\x1fworkers"
_WORKER_MARK = "worker#"
# A worker's item outlives its last beat by this long, then DynamoDB removes it.
_BEAT_KEPT_SECONDS = 86400


class WorkerRegistry(Table):
    async def beat(self, worker_id: str, fingerprint: str, *, at: datetime) -> None:
        """Says that ``worker_id`` is alive at ``at`` and processes as ``fingerprint``."""
        item = {
            **item_key(WORKERS_PARTITION, f"{_WORKER_MARK}{worker_id}"),
            "fingerprint": string_value(fingerprint),
            "host": string_value(socket.gethostname()),
            "seen_at": string_value(format_timestamp(at)),
            EXPIRY_ATTRIBUTE: number_value(int(at.timestamp()) + _BEAT_KEPT_SECONDS),
        }
        with backend_errors(BACKEND):
            await self._dynamodb.call("PutItem", {"TableName": self.table, "Item": item})

    async def forget_worker(self, worker_id: str) -> None:
        """Removes a stopping worker's heartbeat: it runs nothing any more."""
        key = item_key(WORKERS_PARTITION, f"{_WORKER_MARK}{worker_id}")
        with backend_errors(BACKEND):
            await self._dynamodb.call("DeleteItem", {"TableName": self.table, "Key": key})

    async def workers_seen_since(self, since: datetime) -> list[WorkerBeat]:
        """Every worker whose last beat is at ``since`` or later (read consistently)."""
        query = {
            "TableName": self.table,
            "KeyConditionExpression": "user_id = :workers",
            "ExpressionAttributeValues": {":workers": string_value(WORKERS_PARTITION)},
            "ConsistentRead": True,
        }
        beats = [
            WorkerBeat(
                worker_id=item["image_id"]["S"].removeprefix(_WORKER_MARK),
                fingerprint=item["fingerprint"]["S"],
                host=item["host"]["S"],
                seen_at=parse_timestamp(item["seen_at"]["S"]),
            )
            async for item in self._scan(query, query=True)
        ]
        return sorted((b for b in beats if b.seen_at >= since), key=lambda b: b.worker_id)
