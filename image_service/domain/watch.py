"""Waiting for images to settle without the client polling: ``GET /images/{id}?wait=ready``
and the ``GET /events`` stream.

Correct across replicas with no shared state: what settles an image (the worker, another
replica's completion) writes it to DynamoDB, and one loop per process reads every image any
request here is waiting on, a hundred per ``BatchGetItem``, once per interval: a thousand held
waits are ten reads a second, not a thousand. A change this process makes itself (its
completion, its embedded worker) is announced at once, so the common case does not wait for
the next poll.

Streams hear other processes' changes from the feed, which every change that owes an event
writes in its own transaction (``domain/events.py``): while any stream is open here, the same
loop reads the feed's new entries, every user's, once per interval (eight queries, one per
shard, whatever the number of streams), and hands each to its owner's streams. A change made
through any replica (deletes and trashes included) reaches a stream here within the interval
(1 s) plus the feed index's lag (DynamoDB's global indexes: usually well under a second); the
service states **3 seconds** and tests it with two ``serve`` processes. Each read looks
``FEED_OVERLAP`` back past the last, for entries the index shows late or a replica's clock
dates early, and skips what it has heard.

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
from datetime import datetime, timedelta

from image_service.domain.errors import TooManyWaits
from image_service.domain.holds import Holds
from image_service.domain.models import ImageRecord, ImageStatus, format_timestamp
from image_service.domain.ports import Clock, FeedEntry, utc_now

log = logging.getLogger(__name__)

IN_FLIGHT = frozenset({ImageStatus.FETCHING, ImageStatus.PENDING, ImageStatus.PROCESSING})
ImageKey = tuple[str, str]  # (owner, image id)
Change = tuple[str, ImageRecord]  # (event type, the image as it is now)

ReadMany = Callable[[Sequence[ImageKey]], Awaitable[list[ImageRecord]]]
ReadFeed = Callable[[datetime], Awaitable[list[FeedEntry]]]

# How far back each read of the feed looks past the last one.
FEED_OVERLAP = timedelta(seconds=3)


class StatusWatcher:
    def __init__(
        self,
        *,
        read_many: ReadMany,
        read_feed: ReadFeed,
        origin: str,
        max_waits: int,
        max_waits_per_user: int,
        poll_seconds: float = 1.0,
        clock: Clock = utc_now,
    ) -> None:
        self._read_many = read_many
        self._read_feed = read_feed
        self._origin = origin  # this process's changes: its streams heard them at once
        self._poll_seconds = poll_seconds
        self._clock = clock
        self._waiters: dict[ImageKey, list[asyncio.Future[ImageRecord]]] = defaultdict(list)
        self._holds = Holds(
            resource="held waits and event streams",
            code="too_many_held_waits",
            per_user=max_waits_per_user,
            per_process=max_waits,
            process_full=TooManyWaits,
        )
        # Event streams: owner -> its subscribers' queues.
        self._streams: dict[str, set[asyncio.Queue[Change | None]]] = defaultdict(set)
        # The feed: read from when (None: no stream open), and the entries heard since then.
        self._feed_from: datetime | None = None
        self._heard: set[str] = set()

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
        if self._feed_from is None:
            self._feed_from = self._clock()
        try:
            yield queue
        finally:
            self._holds.give_back(holder)
            self._streams[owner].discard(queue)
            if not self._streams[owner]:
                del self._streams[owner]

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
        for queue in self._streams.get(record.user_id, ()):
            with contextlib.suppress(asyncio.QueueFull):  # a stalled reader misses some
                queue.put_nowait((event_type or f"image.{record.status.value}", record))

    async def run(self) -> None:
        """Reads what is waited on, and the feed while streams are open, every interval,
        until cancelled."""
        while True:
            await asyncio.sleep(self._poll_seconds)
            try:
                await self._hear_feed()
                if self._waiters:
                    for record in await self._read_many(list(self._waiters)):
                        if record.status not in IN_FLIGHT:
                            self.changed(record)
            except Exception as exc:  # an outage: waits time out, streams catch up after it
                log.warning("status watch failed: %s: %s", type(exc).__name__, exc)

    async def _hear_feed(self) -> None:
        """Hands the feed's new entries from other processes to their owners' streams."""
        if not self._streams:
            self._feed_from = None
            self._heard.clear()
            return
        now = self._clock()
        since = (self._feed_from or now) - FEED_OVERLAP
        entries = await self._read_feed(since)
        self._feed_from = now  # after the read: an outage reads the time it missed next
        for entry in entries:
            if entry.entry_id in self._heard:
                continue
            self._heard.add(entry.entry_id)
            if entry.origin != self._origin:
                self.changed(entry.record, entry.event_type)
        # Entry ids begin with their time: those before the next read's start are never
        # read again.
        horizon = format_timestamp(now - FEED_OVERLAP)
        self._heard = {heard for heard in self._heard if heard >= horizon}
