"""Bringing ready images up to the current processing (``image-service reprocess``).

Processing records on each image it makes ready what it made of it: a fingerprint of the
variants (names, sizes, formats), of whether GPS is kept, and of the pipeline's revision
(``ProcessingPolicy.fingerprint``). When any of these changes (a variant added to
``IMAGE_SERVICE_VARIANTS``, photo metadata that an older version did not read), the images
processed otherwise are found by their fingerprint and queued for the workers, which render
them again in place: each stays ready and served throughout.

Safe on a live service: the command only reads the table and queues jobs, and a job's result
is one conditional write that keeps the owner's edits made meanwhile and leaves an image
trashed or deleted meanwhile alone. A second run finds nothing to do, and a run cut short is
finished by the next. It paces itself: jobs are queued only while fewer than ``backlog`` wait
on the queue, so that a fresh upload never waits behind more than that many.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from image_service.domain.jobs import DEFAULT_REPROCESS_BACKLOG, reprocess_job
from image_service.storage.dynamo import ImageRepository
from image_service.storage.queue import JobQueue

DEFAULT_BACKLOG = DEFAULT_REPROCESS_BACKLOG
# How often a full backlog is looked at again: often enough that the worker never runs dry
# (at 1 s, a backlog of 5 left it idle half the time: bench/reprocess.py).
BACKLOG_POLL_SECONDS = 0.25

ImageName = tuple[str, str]  # (owner, image id)


async def reprocess(
    repository: ImageRepository,
    jobs: JobQueue,
    fingerprint: str,
    *,
    apply: bool,
    owner: str | None = None,
    everything: bool = False,
    backlog: int = DEFAULT_BACKLOG,
) -> AsyncIterator[ImageName]:
    """Each ready image (of ``owner``, or everyone's) processed otherwise than ``fingerprint``
    says (``everything``: every ready image), as it is queued for processing again (or, when
    not ``apply``, as found)."""
    room = 0
    found = repository.ready_images(
        owner=owner, processed_otherwise_than=None if everything else fingerprint
    )
    async for record in found:
        if apply:
            while room <= 0:
                room = backlog - await jobs.waiting()
                if room <= 0:
                    await asyncio.sleep(BACKLOG_POLL_SECONDS)
            await jobs.send(reprocess_job(record, fingerprint=fingerprint, force=everything))
            room -= 1
        yield record.user_id, record.image_id
