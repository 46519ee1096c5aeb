"""The sweeper: finishes images left between two steps.

An image is `fetching` from an import's start until a worker has fetched it, `processing` from
completion until the worker publishes it, and `deleting` from a DELETE until its objects and
record are gone. Each step is retried by whoever drives it (SQS redelivers a job, a client
retries a DELETE), but a job can still be lost (the queue refused it after the record changed,
or it ended in the dead-letter queue) and a client may never retry. The sweeper looks, every so
often, for images that have sat in one of these statuses for longer than any healthy step takes
(``IMAGE_SERVICE_STUCK_AFTER_SECONDS``, far beyond an import's deadline), and drives them on:
it queues the import or processing job again, or finishes the delete. It also purges what has
been in the trash longer than ``IMAGE_SERVICE_TRASH_DAYS``. (The jobs changes owe are the
outbox relay's, ``relay.py``.) Several workers may sweep at once: each image is claimed with a
conditional write first, so exactly one of them acts on it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from image_service.domain.imports import import_job
from image_service.domain.jobs import process_job
from image_service.domain.models import ImageRecord, ImageStatus
from image_service.domain.periodic import every
from image_service.domain.trash import Trash
from image_service.logs import image_event
from image_service.metrics import WorkerMetrics
from image_service.storage.dynamo import ImageRepository
from image_service.storage.queue import JobQueue

log = logging.getLogger(__name__)


# The statuses a lost job leaves an image in, and the job that drives it on.
_REQUEUED: tuple[tuple[ImageStatus, Callable[[ImageRecord], dict[str, str]]], ...] = (
    (ImageStatus.FETCHING, import_job),
    (ImageStatus.PROCESSING, process_job),
)


@dataclass
class SweepReport:
    requeued: list[tuple[str, str]] = field(default_factory=list)  # (owner, image id)
    deleted: list[tuple[str, str]] = field(default_factory=list)
    purged: list[tuple[str, str]] = field(default_factory=list)
    # Owed jobs queued by the outbox relay, which `image-service sweep` runs too.
    relayed: list[dict[str, Any]] = field(default_factory=list)


class Sweeper:
    def __init__(
        self,
        *,
        repository: ImageRepository,
        jobs: JobQueue,
        trash: Trash,
        stuck_after: timedelta,
        clock: Callable[[], datetime],
        trash_for: timedelta | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._metrics = metrics or WorkerMetrics()
        self._repository = repository
        self._jobs = jobs
        self._trash = trash
        self._stuck_after = stuck_after
        self._trash_for = trash_for
        self._clock = clock

    async def sweep(self) -> SweepReport:
        report = SweepReport()
        now = self._clock()
        for status, job in _REQUEUED:
            async for record in self._claim(status, now):
                await self._jobs.send(job(record))
                report.requeued.append((record.user_id, record.image_id))
                self._metrics.swept.labels("requeued").inc()
                log.warning(
                    "%s job queued again for %s/%s",
                    status.value,
                    record.user_id,
                    record.image_id,
                    extra=image_event("image_requeued", record.user_id, record.image_id),
                )
        async for record in self._claim(ImageStatus.DELETING, now):
            await self._trash.finish_delete(record)
            report.deleted.append((record.user_id, record.image_id))
            self._metrics.swept.labels("delete_finished").inc()
            log.warning(
                "interrupted delete finished for %s/%s",
                record.user_id,
                record.image_id,
                extra=image_event("delete_finished", record.user_id, record.image_id),
            )
        if self._trash_for is not None:
            # A purge is conditional on the image still being in the trash: a restore racing
            # it, or another sweeper, wins or loses whole.
            async for record in self._repository.waiting_since(
                ImageStatus.TRASHED, now - self._trash_for
            ):
                if await self._trash.purge(record):
                    report.purged.append((record.user_id, record.image_id))
                    self._metrics.swept.labels("purged").inc()
                    log.info(
                        "purged from the trash: %s/%s",
                        record.user_id,
                        record.image_id,
                        extra=image_event("image_purged", record.user_id, record.image_id),
                    )
        return report

    async def _claim(self, status: ImageStatus, now: datetime) -> AsyncIterator[ImageRecord]:
        """The images stuck in ``status`` that this sweeper claimed: one changed meanwhile has
        someone on it, and is left alone."""
        async for record in self._repository.waiting_since(status, now - self._stuck_after):
            claimed = await self._repository.touch(record, updated_at=now)
            if claimed is not None:
                yield claimed

    async def run(self, interval_seconds: float) -> None:
        """Sweeps every ``interval_seconds`` until cancelled; an outage skips a round."""
        await every(interval_seconds, self.sweep, "sweep")
