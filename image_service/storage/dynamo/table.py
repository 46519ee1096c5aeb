"""The table the repository's rooms share: its calls, its name, and the reads they all make."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from botocore.exceptions import ClientError

from image_service.storage.dynamo.batching import GroupCommit
from image_service.storage.dynamo.calls import TableCalls
from image_service.storage.dynamo.codec import (
    BACKEND,
    USAGE_ID,
    Item,
    item_key,
    number_value,
    string_value,
)
from image_service.storage.errors import backend_errors, error_code


class Table:
    """One DynamoDB table of image records, reached through ``TableCalls`` (aiobotocore's client
    by default, or the direct transport)."""

    def __init__(
        self, dynamodb: TableCalls, table: str, *, dead_record_ttl: int | None = None
    ) -> None:
        self._dynamodb = dynamodb
        self.table = table
        # Pending and rejected records are deleted by DynamoDB this long after their last change.
        self._dead_record_ttl = dead_record_ttl
        self._creations = GroupCommit(dynamodb, table)

    async def _read_item(self, user_id: str, sort_id: str, **options: str) -> Item | None:
        """One item by its key, read consistently (``options``: a ProjectionExpression...)."""
        key = item_key(user_id, sort_id)
        with backend_errors(BACKEND):
            response = await self._dynamodb.call(
                "GetItem", {"TableName": self.table, "Key": key, "ConsistentRead": True, **options}
            )
        item: Item | None = response.get("Item")
        return item

    async def _scan(self, scan: dict[str, Any], *, query: bool = False) -> AsyncIterator[Item]:
        """The items of a scan (or, ``query``, of a query), page by page (each page is read
        only when the last is used)."""
        while True:
            with backend_errors(BACKEND):
                if query:
                    page = await self._dynamodb.call("Query", scan)
                else:
                    page = await self._dynamodb.call("Scan", scan)
            for item in page.get("Items", []):
                yield item
            if "LastEvaluatedKey" not in page:
                return
            scan = {**scan, "ExclusiveStartKey": page["LastEvaluatedKey"]}

    def _owned(self, owner: str, mark: str) -> AsyncIterator[Item]:
        """The owner's items whose sort key starts with ``mark`` (their albums, API keys,
        share links), every page, read consistently."""
        query = {
            "TableName": self.table,
            "KeyConditionExpression": "user_id = :owner AND begins_with(image_id, :mark)",
            "ExpressionAttributeValues": {
                ":owner": string_value(owner),
                ":mark": string_value(mark),
            },
            "ConsistentRead": True,
        }
        return self._scan(query, query=True)

    def _count_write(
        self, owner: str, counter: str, delta: int, *, below: int | None = None
    ) -> dict[str, Any]:
        """A transaction's write moving ``counter`` on the owner's usage item by ``delta``;
        with ``below``, only while the count is under it (the per-owner bound of what they
        hold: API keys, albums, share links)."""
        update: dict[str, Any] = {
            "TableName": self.table,
            "Key": item_key(owner, USAGE_ID),
            "UpdateExpression": "ADD #counter :delta",
            "ExpressionAttributeNames": {"#counter": counter},
            "ExpressionAttributeValues": {":delta": number_value(delta)},
        }
        if below is not None:
            update["ConditionExpression"] = "attribute_not_exists(#counter) OR #counter < :below"
            update["ExpressionAttributeValues"][":below"] = number_value(below)
        return {"Update": update}

    async def _transact(self, writes: list[dict[str, Any]]) -> bool:
        """Runs ``writes`` as one transaction: True when done, False when one of their
        conditions refused it (a transaction that lost a race to another is a 503 here)."""
        return await self._refusals(writes) is None

    async def _refusals(self, writes: list[dict[str, Any]]) -> list[bool] | None:
        """Runs ``writes`` as one transaction: None when done, else which of them their own
        condition refused, in order (a transaction that lost a race is a 503 here)."""
        with backend_errors(BACKEND):
            try:
                await self._dynamodb.call("TransactWriteItems", {"TransactItems": writes})
            except ClientError as exc:
                if error_code(exc) != "TransactionCanceledException":
                    raise
                reasons = exc.response.get("CancellationReasons", [])
                refused = [reason.get("Code") == "ConditionalCheckFailed" for reason in reasons]
                if any(refused):
                    return refused
                raise
        return None

    async def ping(self) -> None:
        with backend_errors(BACKEND):
            await self._dynamodb.call("DescribeTable", {"TableName": self.table})
