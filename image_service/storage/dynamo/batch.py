"""Bulk jobs in the table (``domain/batch.py``): one item per job beside its owner's images
(``batch#<id>``), in no listing. A queued job is written with its queue message as an outbox
item (``kept#``, for the relay) and with the owner's count of active jobs (``batch_jobs`` on
the usage item) in one transaction; the write that finishes it gives the count back. Every
progress write is conditional on the revision its writer read: two workers never both advance
one job. Finished jobs (and keyed inline answers) expire after ``KEPT_DAYS``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from image_service.domain.batch import KEPT_DAYS, BatchJob, BatchRequest
from image_service.domain.cursor import CursorPosition
from image_service.domain.models import format_timestamp, parse_timestamp
from image_service.domain.ports import OwedJob
from image_service.storage.dynamo.codec import (
    EXPIRY_ATTRIBUTE,
    Item,
    item_key,
    kept_job_item,
    number_value,
    string_value,
)
from image_service.storage.dynamo.table import Table

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.type_defs import AttributeValueTypeDef

BATCH_MARK = "batch#"
_ACTIVE = "batch_jobs"  # the owner's queued and running jobs, on their usage item
# A job that never finishes (it cannot: a worker always puts it back) still leaves in time.
_ACTIVE_EXPIRY = timedelta(days=30)


def _json(value: Any) -> AttributeValueTypeDef:
    return string_value(json.dumps(value, separators=(",", ":")))


def _position(value: int | CursorPosition | None) -> Any:
    if isinstance(value, CursorPosition):
        return {"s": value.sort_key, "i": value.image_id}
    return value


def _batch_item(job: BatchJob) -> Item:
    finished = job.finished_at
    expires = finished + timedelta(days=KEPT_DAYS) if finished else job.created_at + _ACTIVE_EXPIRY
    item: Item = {
        **item_key(job.owner, BATCH_MARK + job.job_id),
        "request": _json(job.request.as_json()),
        "state": string_value(job.state),
        "created_at": string_value(format_timestamp(job.created_at)),
        "updated_at": string_value(format_timestamp(job.updated_at)),
        "succeeded": number_value(job.succeeded),
        "failed": number_value(job.failed),
        "results": _json([list(result) for result in job.results]),
        "position": _json(_position(job.position)),
        "fingerprint": string_value(job.fingerprint),
        "inline": {"BOOL": job.inline},
        "revision": number_value(job.revision),
        EXPIRY_ATTRIBUTE: number_value(int(expires.timestamp())),
    }
    if job.total is not None:
        item["total"] = number_value(job.total)
    if job.lease_until is not None:
        item["lease_until"] = string_value(format_timestamp(job.lease_until))
    if finished is not None:
        item["finished_at"] = string_value(format_timestamp(finished))
    return item


def _batch_job(item: dict[str, Any]) -> BatchJob:
    position = json.loads(item["position"]["S"])
    if isinstance(position, dict):
        position = CursorPosition(sort_key=position["s"], image_id=position["i"])

    def moment(name: str) -> Any:
        return parse_timestamp(item[name]["S"]) if name in item else None

    return BatchJob(
        job_id=item["image_id"]["S"].removeprefix(BATCH_MARK),
        owner=item["user_id"]["S"],
        request=BatchRequest.from_json(json.loads(item["request"]["S"])),
        state=item["state"]["S"],
        created_at=moment("created_at"),
        updated_at=moment("updated_at"),
        total=int(item["total"]["N"]) if "total" in item else None,
        succeeded=int(item["succeeded"]["N"]),
        failed=int(item["failed"]["N"]),
        results=tuple((str(a), str(b)) for a, b in json.loads(item["results"]["S"])),
        position=position,
        lease_until=moment("lease_until"),
        fingerprint=item["fingerprint"]["S"],
        inline=item["inline"]["BOOL"],
        revision=int(item["revision"]["N"]),
        finished_at=moment("finished_at"),
    )


class BatchTable(Table):
    async def batch_job(self, owner: str, job_id: str) -> BatchJob | None:
        item = await self._read_item(owner, BATCH_MARK + job_id)
        return None if item is None else _batch_job(item)

    async def create_batch_job(
        self, job: BatchJob, *, max_active: int, message: OwedJob | None
    ) -> str | None:
        writes: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": _batch_item(job),
                    "ConditionExpression": "attribute_not_exists(image_id)",
                }
            }
        ]
        if message is not None:
            writes.append(self._count_write(job.owner, _ACTIVE, 1, below=max_active))
            body = json.dumps(message.job, separators=(",", ":"))
            kept = kept_job_item(message.user_id, message.job_id, body, kept_at=job.created_at)
            writes.append({"Put": {"TableName": self.table, "Item": kept}})
        refused = await self._refusals(writes)
        if refused is None:
            return None
        return "exists" if refused[0] else "limit"

    async def save_batch_job(self, job: BatchJob, *, finished: bool) -> BatchJob | None:
        stored = replace(job, revision=job.revision + 1)
        put = {
            "Put": {
                "TableName": self.table,
                "Item": _batch_item(stored),
                "ConditionExpression": "#revision = :revision",
                "ExpressionAttributeNames": {"#revision": "revision"},
                "ExpressionAttributeValues": {":revision": number_value(job.revision)},
            }
        }
        writes = [put]
        if finished and not job.inline:
            writes.append(self._count_write(job.owner, _ACTIVE, -1))
        return stored if await self._transact(writes) else None
