"""Whole-table reads for the maintenance commands (reconcile, migrate, reprocess): every image,
the original service's items, the ready images a reprocess visits. Paged, and safe beside live
traffic: they only read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from image_service.domain.models import (
    ImageRecord,
    ImageStatus,
    LegacyImage,
)
from image_service.storage.dynamo.codec import (
    from_item,
    legacy_from_item,
    string_value,
)
from image_service.storage.dynamo.table import Table


class Scans(Table):
    async def all_images(self) -> AsyncIterator[ImageRecord]:
        """Every image record in the table (a full scan: for maintenance, never for requests)."""
        scan = {
            "TableName": self.table,
            "FilterExpression": "attribute_exists(upload_sort) OR attribute_exists(trash_sort)",
        }
        async for item in self._scan(scan):
            yield from_item(item)

    async def legacy_images(self) -> AsyncIterator[LegacyImage]:
        """The image items the original service wrote (they have an object, never a status):
        a full scan, for ``image-service migrate`` and ``reconcile``, never for requests."""
        scan = {
            "TableName": self.table,
            "FilterExpression": "attribute_exists(s3_key) AND attribute_not_exists(#status)",
            "ExpressionAttributeNames": {"#status": "status"},
        }
        async for item in self._scan(scan):
            yield legacy_from_item(item)

    async def ready_images(
        self, *, owner: str | None = None, processed_otherwise_than: str | None = None
    ) -> AsyncIterator[ImageRecord]:
        """Ready images, of ``owner`` (a query of their partition) or of everyone (a full
        scan): for ``image-service reprocess``, never for requests. With
        ``processed_otherwise_than``, only those whose ``processed_with`` is not that, or
        missing (filtered by DynamoDB, so the others never travel)."""
        request: dict[str, Any] = {
            "TableName": self.table,
            # The image items themselves: tag copies carry the status, not the upload sort.
            "FilterExpression": "attribute_exists(upload_sort) AND #status = :ready",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {":ready": string_value(ImageStatus.READY.value)},
        }
        if processed_otherwise_than is not None:
            request["FilterExpression"] += (
                " AND (attribute_not_exists(processed_with) OR processed_with <> :processed_with)"
            )
            request["ExpressionAttributeValues"][":processed_with"] = string_value(
                processed_otherwise_than
            )
        if owner is not None:
            request["KeyConditionExpression"] = "user_id = :owner"
            request["ExpressionAttributeValues"][":owner"] = string_value(owner)
        async for item in self._scan(request, query=owner is not None):
            yield from_item(item)
