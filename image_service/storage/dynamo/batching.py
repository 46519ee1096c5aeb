"""Group commit for the upload-URL path's one write: creations arriving together share
BatchWriteItem calls.

A creation starts a batch at once while fewer than ``_BATCHES_IN_FLIGHT`` are being written,
else waits for the next one, which takes every waiting creation that fits. Alone, a creation
costs one call; under load, one call per up to 25 items. Unconditional (a fresh UUID has no
twin) and not atomic: if a batch fails after its retries, its callers get a 503 and the parts
written expire with the TTL of pending records.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from image_service.domain.errors import BackendUnavailable, Unstorable
from image_service.storage.dynamo.calls import TableCalls
from image_service.storage.dynamo.codec import BACKEND
from image_service.storage.errors import backend_errors

BATCH_WRITE_SIZE = 25  # BatchWriteItem's limit
_BATCHES_IN_FLIGHT = 2
# Items DynamoDB leaves unprocessed (throttled) are sent again, backing off, this many times.
_UNPROCESSED_ATTEMPTS = 8

PutRequests = list[dict[str, Any]]
# A creation's put requests, and the future its caller awaits.
_Creation = tuple[PutRequests, "asyncio.Future[None]"]


def _tell(creations: list[_Creation], failure: BaseException | None) -> None:
    for _, waiter in creations:
        if waiter.done():  # a caller that gave up (its client went away)
            continue
        if failure is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(failure)


class GroupCommit:
    """The creations of one table, written together."""

    def __init__(self, dynamodb: TableCalls, table: str) -> None:
        self._dynamodb = dynamodb
        self._table = table
        # Creations waiting for a batch, and batches being written.
        self._waiting: deque[_Creation] = deque()
        self._batches: set[asyncio.Task[None]] = set()

    async def write(self, requests: PutRequests) -> None:
        """Writes one creation's items (at most 21: the image and 20 tag copies) in a batch."""
        written = asyncio.get_running_loop().create_future()
        self._waiting.append((requests, written))
        self._start_batches()
        # The write runs in the batch's task; a request cancelled here (its deadline passed)
        # was still waiting on DynamoDB, and its 503 says so.
        with backend_errors(BACKEND):
            await written

    def _start_batches(self) -> None:
        while self._waiting and len(self._batches) < _BATCHES_IN_FLIGHT:
            creations: list[_Creation] = []
            size = 0
            # Whole creations only (at most 21 items each: the image and 20 tag copies).
            while self._waiting and (
                not creations or size + len(self._waiting[0][0]) <= BATCH_WRITE_SIZE
            ):
                creation = self._waiting.popleft()
                creations.append(creation)
                size += len(creation[0])
            batch = asyncio.create_task(self._write_for(creations))
            self._batches.add(batch)
            batch.add_done_callback(self._batch_done)

    def _batch_done(self, batch: asyncio.Task[None]) -> None:
        self._batches.discard(batch)
        self._start_batches()

    async def _write_for(self, creations: list[_Creation]) -> None:
        """Writes the creations in one call and tells each how it went. DynamoDB refuses a
        batch as a whole for one item's values (too large, a key too long): then the halves
        are written apart, down to the one creation to blame, so only its request fails."""
        try:
            await self.batch_write([request for requests, _ in creations for request in requests])
        except Unstorable as exc:
            if len(creations) > 1:
                middle = len(creations) // 2
                await asyncio.gather(
                    self._write_for(creations[:middle]), self._write_for(creations[middle:])
                )
                return
            _tell(creations, exc)
        except Exception as exc:  # every waiter hears how its write ended, whatever it was
            _tell(creations, exc)
        else:
            _tell(creations, None)

    async def batch_write(self, requests: list[dict[str, Any]]) -> None:
        """One BatchWriteItem of up to 25 puts, retrying what DynamoDB leaves unprocessed."""
        with backend_errors(BACKEND):
            for attempt in range(_UNPROCESSED_ATTEMPTS):
                response = await self._dynamodb.call(
                    "BatchWriteItem", {"RequestItems": {self._table: requests}}
                )
                requests = response.get("UnprocessedItems", {}).get(self._table, [])
                if not requests:
                    return
                await asyncio.sleep(0.05 * 2**attempt)  # throttled: back off, then the rest
        raise BackendUnavailable(BACKEND, "UnprocessedItems")
