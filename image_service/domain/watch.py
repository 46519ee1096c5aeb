"""Waiting for images to settle without the client polling: ``GET /images/{id}?wait=ready``
and the ``GET /events`` stream.

Correct across replicas with no shared state: what settles an image (the worker, another
replica's completion) writes it to DynamoDB, and one loop per process reads every image any
request here is waiting on, a hundred per ``BatchGetItem``, once per interval: a thousand held
waits are ten reads a second, not a thousand. A change this process makes itself (its
completion, its embedded worker) is announced at once, so the common case does not wait for
the next poll.

A held wait is a dict entry and a future here; with its connection and request in aiohttp it
costs about 27 KiB (``bench/waits.py``: a thousand held, 27 MiB, 4 % of a core). Their number
is bounded per process (``IMAGE_SERVICE_MAX_HELD_WAITS``, 503) and per caller within it
(``IMAGE_SERVICE_MAX_HELD_WAITS_PER_USER``, 429): one user opening a thousand streams takes
their own share, not everybody's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from image_service.domain.errors import TooManyWaits
from image_service.domain.holds import Holds
from image_service.domain.models import ImageRecord, ImageStatus

log = logging.getLogger(__name__)

IN_FLIGHT = frozenset({ImageStatus.PENDING, ImageStatus.PROCESSING})
ImageKey = tuple[str, str]  # (owner, image id)
Change = tuple[str, ImageRecord]  # (event type, the image as it is now)

ReadMany = Callable[[Sequence[ImageKey]], Awaitable[list[ImageRecord]]]
ListInFlight = Callable[[str], Awaitable[list[ImageRecord]]]


class StatusWatcher:
    def __init__(
        self,
        *,
        read_many: ReadMany,
        list_in_flight: ListInFlight,
        max_waits: int,
        max_waits_per_user: int,
        poll_seconds: float = 1.0,
        rescan_seconds: float = 5.0,
    ) -> None:
        self._read_many = read_many
        self._list_in_flight = list_in_flight
        self._poll_seconds = poll_seconds
        self._rescan_seconds = rescan_seconds
        self._waiters: dict[ImageKey, list[asyncio.Future[ImageRecord]]] = defaultdict(list)
        self._holds = Holds(
            resource="held waits and event streams",
            code="too_many_held_waits",
            per_user=max_waits_per_user,
            per_process=max_waits,
            process_full=TooManyWaits,
        )
        # Event streams: owner -> its subscribers' queues, and the in-flight images they follow.
        self._streams: dict[str, set[asyncio.Queue[Change | None]]] = defaultdict(set)
        self._followed: dict[ImageKey, ImageStatus] = {}

    @property
    def held(self) -> int:
        return self._holds.total

    async def wait(
        self, key: ImageKey, seconds: float, *, holder: str | None = None
    ) -> ImageRecord | None:
        """The image once it has left pending/processing, or None if ``seconds`` passed.
        Counted against ``holder`` (the caller; the owner by default)."""
        holder = key[0] if holder is None else holder
        self._holds.take(holder)
        future: asyncio.Future[ImageRecord] = asyncio.get_running_loop().create_future()
        self._waiters[key].append(future)
        try:
            async with asyncio.timeout(seconds):
                return await future
        except TimeoutError:
            return None
        finally:
            self._holds.give_back(holder)
            waiting = self._waiters.get(key)
            if waiting is not None:
                with contextlib.suppress(ValueError):
                    waiting.remove(future)
                if not waiting:
                    del self._waiters[key]

    @contextlib.asynccontextmanager
    async def stream(
        self, owner: str, *, holder: str | None = None
    ) -> AsyncIterator[asyncio.Queue[Change | None]]:
        """The owner's image changes as they happen, while the block runs; None once the
        process is stopping (:meth:`close_streams`). Counted against ``holder``."""
        holder = owner if holder is None else holder
        self._holds.take(holder)
        queue: asyncio.Queue[Change | None] = asyncio.Queue(maxsize=1000)
        self._streams[owner].add(queue)
        try:
            await self._rescan(owner)
            yield queue
        finally:
            self._holds.give_back(holder)
            self._streams[owner].discard(queue)
            if not self._streams[owner]:
                del self._streams[owner]
                for key in [k for k in self._followed if k[0] == owner]:
                    del self._followed[key]

    def close_streams(self) -> None:
        """Ends every stream (on shutdown: a stream would otherwise hold it for its grace)."""
        for queues in self._streams.values():
            for queue in queues:
                if queue.full():  # a stalled reader: the end matters more than an event
                    queue.get_nowait()
                queue.put_nowait(None)

    def changed(self, record: ImageRecord, event_type: str | None = None) -> None:
        """A change this process made (or saw): waiters and streams hear of it now.
        ``event_type`` defaults to ``image.<status>``."""
        key = (record.user_id, record.image_id)
        if record.status not in IN_FLIGHT:
            for future in self._waiters.pop(key, []):
                if not future.done():
                    future.set_result(record)
        if record.user_id in self._streams:
            if record.status in IN_FLIGHT:
                self._followed[key] = record.status
            else:
                self._followed.pop(key, None)
            for queue in self._streams[record.user_id]:
                with contextlib.suppress(asyncio.QueueFull):  # a stalled reader misses some
                    queue.put_nowait((event_type or f"image.{record.status.value}", record))

    async def _rescan(self, owner: str) -> None:
        """Follows the owner's in-flight images (uploads made through any replica)."""
        for record in await self._list_in_flight(owner):
            self._followed.setdefault((owner, record.image_id), record.status)

    async def run(self) -> None:
        """Reads what is waited on and followed, every interval, until cancelled."""
        loop = asyncio.get_running_loop()
        last_rescan = loop.time()
        while True:
            await asyncio.sleep(self._poll_seconds)
            try:
                if loop.time() - last_rescan >= self._rescan_seconds:
                    last_rescan = loop.time()
                    for owner in list(self._streams):
                        await self._rescan(owner)
                keys = list({*self._waiters, *self._followed})
                if not keys:
                    continue
                found = await self._read_many(keys)
                for record in found:
                    key = (record.user_id, record.image_id)
                    followed = self._followed.get(key)
                    if record.status not in IN_FLIGHT or (
                        followed is not None and followed is not record.status
                    ):
                        self.changed(record)
                for key in set(keys) - {(r.user_id, r.image_id) for r in found}:
                    self._followed.pop(key, None)  # gone (deleted elsewhere)
            except Exception as exc:  # an outage: waits time out, streams catch up after it
                log.warning("status watch failed: %s: %s", type(exc).__name__, exc)
