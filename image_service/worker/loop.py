"""The queue worker: long polling, bounded concurrency, visibility extension, backoff retries.

A job that keeps failing is left to SQS's redrive policy, which moves it to the dead-letter
queue after ``job_max_receives`` receives (set up by ``image-service init``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from image_service import tracing
from image_service.domain.errors import BackendUnavailable
from image_service.metrics import WorkerMetrics
from image_service.storage.queue import JobQueue, QueueMessage
from image_service.worker.pipeline import ImageProcessor

log = logging.getLogger(__name__)

_MAX_BATCH = 10  # SQS's limit per receive
_BACKOFF_BASE_SECONDS = 2
_BACKOFF_MAX_SECONDS = 300
_IDLE_AFTER_ERROR_SECONDS = 1.0
# How long a message stays hidden once received, until its job starts and takes the full
# visibility timeout. A receive can be abandoned while it waits (its worker was killed), and SQS
# may still hand it a message: that message is then lost for this long, not a whole visibility.
RECEIVE_LEASE_SECONDS = 10


def retry_delay(receive_count: int) -> int:
    """Seconds a failed job waits before its next try: 2, 4, 8... up to five minutes."""
    return int(min(_BACKOFF_MAX_SECONDS, _BACKOFF_BASE_SECONDS**receive_count))


async def retry_later(queue: JobQueue, message: QueueMessage, failure: Exception) -> None:
    """A failed job's message is hidden for its backoff, then SQS shows it again for the next
    try; after the last one the redrive policy dead-letters it. Hiding may fail too: then it
    shows again when its current invisibility ends, which is only sooner."""
    delay = retry_delay(message.receive_count)
    log.warning(
        "job %s failed (try %d, next in %d s): %s: %s",
        message.message_id,
        message.receive_count,
        delay,
        type(failure).__name__,
        failure,
    )
    with contextlib.suppress(Exception):
        await queue.hide(message, delay)


class Worker:
    def __init__(
        self,
        queue: JobQueue,
        processor: ImageProcessor,
        *,
        concurrency: int,
        visibility_seconds: int,
        wait_seconds: int,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._queue = queue
        self._metrics = metrics or WorkerMetrics()
        self._processor = processor
        self._slots = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._visibility = visibility_seconds
        self._wait = wait_seconds
        # Each job in flight and the message it came in.
        self._in_flight: dict[asyncio.Task[None], QueueMessage] = {}

    async def run(self) -> None:
        """Polls until cancelled; then :meth:`drain` lets the jobs in flight finish. A receive
        cut short by the cancellation may still be handed a message by SQS: received on the
        short lease, it is back on the queue within RECEIVE_LEASE_SECONDS."""
        while True:
            await self._slots.acquire()  # poll only when a job could start
            self._slots.release()
            free = self._concurrency - len(self._in_flight)
            try:
                messages = await self._queue.receive(
                    max_messages=max(1, min(_MAX_BATCH, free)),
                    wait_seconds=self._wait,
                    visibility_timeout=min(self._visibility, RECEIVE_LEASE_SECONDS),
                )
            except BackendUnavailable as exc:  # an SQS outage must not end the worker
                self._metrics.receive_failures.inc()
                log.warning("receiving jobs failed: %s", exc.reason)
                await asyncio.sleep(_IDLE_AFTER_ERROR_SECONDS)
                continue
            except Exception:
                self._metrics.receive_failures.inc()
                log.exception("receiving jobs failed")
                await asyncio.sleep(_IDLE_AFTER_ERROR_SECONDS)
                continue
            for message in messages:
                await self._slots.acquire()
                task = asyncio.create_task(self._run_one(message))
                self._in_flight[task] = message
                task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)

    async def drain(self, grace_seconds: float) -> None:
        """Lets the jobs in flight finish, for at most ``grace_seconds``; the jobs still running
        then are cancelled and their messages made visible at once, so that another worker
        takes them now rather than when their invisibility runs out. (Processing is
        idempotent: a job redone from the start makes the same variants.)"""
        if not self._in_flight:
            return
        running = dict(self._in_flight)
        _, unfinished = await asyncio.wait(running, timeout=grace_seconds)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        for task in unfinished:
            log.warning("job %s cut short by shutdown; back on the queue", running[task].message_id)
            with contextlib.suppress(Exception):
                await self._queue.hide(running[task], 0)

    async def _run_one(self, message: QueueMessage) -> None:
        started = time.perf_counter()
        self._metrics.in_flight.inc()
        outcome = "cut_short"  # unless it ends on its own: cancelled by the drain
        heartbeat: asyncio.Task[None] | None = None
        try:
            # From the receive's short lease to the visibility timeout, before the job can end:
            # a failed job's own hide (its retry delay) must be the last word, never this one.
            await self._extend(message)
            heartbeat = asyncio.create_task(self._keep_hidden(message))
            job: Any = message.json()
            with tracing.job_span(str(job.get("type", "process")), message.attributes):
                await self._processor.handle(job)
        except Exception as exc:
            outcome = "failed"
            await retry_later(self._queue, message, exc)
        else:
            outcome = "done"
            with contextlib.suppress(Exception):  # undeleted, it is redone: harmless, idempotent
                await self._queue.delete(message)
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
            self._slots.release()
            self._metrics.in_flight.dec()
            self._metrics.observe_job(outcome, time.perf_counter() - started)

    async def _keep_hidden(self, message: QueueMessage) -> None:
        """Extends the message's invisibility while its job runs, so nobody else starts it."""
        while True:
            await asyncio.sleep(self._visibility / 2)
            await self._extend(message)

    async def _extend(self, message: QueueMessage) -> None:
        try:
            await self._queue.hide(message, self._visibility)
        except Exception:  # it shows again when its lease ends: redone, which is idempotent
            log.warning("could not extend job %s", message.message_id)
