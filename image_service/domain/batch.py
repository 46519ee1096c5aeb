"""Bulk operations on one owner's images: tag, untag, delete, restore or set_focal, applied to
each image as its own single-image call would, with a result for each.

- Up to ``MAX_INLINE`` ids: done within the request, a result per id (``ok`` or the error
  code that image's own call would answer).
- More ids (up to ``MAX_IDS``), or every image with a tag: a **job**, run by a worker a chunk
  at a time, its progress at ``GET /jobs/{id}``. The job and its queue message are written in
  one transaction (the message as an outbox item: a process that dies before sending it loses
  nothing, the relay sends it). A worker holds a job by a lease it renews with each chunk's
  progress, so a duplicate message, or a second worker, never runs one job twice at once, and
  a worker that dies is succeeded once its lease has run out. An outage puts the job back on
  the queue for later rather than failing it.
- With an ``Idempotency-Key``, the same key and body answer the same (the inline results, or
  the same job), and the same key with another body is refused.
- Each image is changed by its own conditional write, on the revision it read and re-read on
  a race (``records.py``): a tag added in bulk keeps a tag the owner added meanwhile.
- Bounds: ``MAX_ACTIVE_JOBS`` queued or running jobs per owner, counted on their usage item in
  the job's own transaction (a job's end gives its place back in the transaction that ends
  it); finished jobs and keyed answers expire.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from image_service.domain.apikeys import require_scope
from image_service.domain.bounded import bounded_gather
from image_service.domain.cursor import CursorPosition
from image_service.domain.errors import (
    BackendUnavailable,
    Conflict,
    InvalidRequest,
    JobNotFound,
    ServiceError,
)
from image_service.domain.library import Library
from image_service.domain.models import (
    FocalPoint,
    ImageStatus,
    ListFilter,
    Principal,
    normalize_tags,
)
from image_service.domain.owners import owner_for
from image_service.domain.ports import Clock, Jobs, Listing, Outbox, OwedJob, utc_now
from image_service.domain.trash import Trash
from image_service.domain.uploads import check_idempotency_key

log = logging.getLogger(__name__)

OPS = ("tag", "untag", "delete", "restore", "set_focal")
MAX_INLINE = 100  # ids answered within the request
MAX_IDS = 1000  # ids one request may name (a job beyond MAX_INLINE)
MAX_ACTIVE_JOBS = 5  # queued or running, per owner
MAX_KEPT_ERRORS = 100  # a job keeps the first failures' ids and codes
CHUNK = 25  # images a worker changes between two progress writes
LEASE_SECONDS = 120  # a worker's hold on a job, renewed with each chunk
RETRY_SECONDS = 30  # an outage puts the job back this much later
KEPT_DAYS = 7  # how long a finished job (or a keyed answer) can be read back
OK = "ok"
JOB_TYPE = "batch"  # its queue message's type

QUEUED, RUNNING, DONE = "queued", "running", "done"


@dataclass(frozen=True, slots=True)
class BatchRequest:
    op: str
    image_ids: tuple[str, ...] = ()
    tag: str | None = None  # every image with this tag, instead of image_ids
    tags: tuple[str, ...] = ()  # what tag and untag add or remove
    focal: FocalPoint | None = None  # set_focal's point (None: cleared)
    permanent: bool = False  # delete: for good, not into the trash

    @property
    def inline(self) -> bool:
        return self.tag is None and len(self.image_ids) <= MAX_INLINE

    def as_json(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "image_ids": list(self.image_ids),
            "tag": self.tag,
            "tags": list(self.tags),
            "focal": None if self.focal is None else [self.focal.x, self.focal.y],
            "permanent": self.permanent,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BatchRequest:
        focal = data.get("focal")
        return cls(
            op=data["op"],
            image_ids=tuple(data.get("image_ids", ())),
            tag=data.get("tag"),
            tags=tuple(data.get("tags", ())),
            focal=None if focal is None else FocalPoint(float(focal[0]), float(focal[1])),
            permanent=bool(data.get("permanent")),
        )

    @property
    def fingerprint(self) -> str:
        text = json.dumps(self.as_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class BatchJob:
    """A bulk operation: a job a worker runs, or (``inline``) a keyed answer kept for its
    retries."""

    job_id: str
    owner: str
    request: BatchRequest
    state: str  # queued | running | done
    created_at: datetime
    updated_at: datetime
    total: int | None  # None until known (a tag's images are counted as they are reached)
    succeeded: int = 0
    failed: int = 0
    # The first failures (image id, error code); an inline answer keeps every result.
    results: tuple[tuple[str, str], ...] = ()
    # Where the job resumes: the next index into image_ids, or a listing position.
    position: int | CursorPosition | None = None
    lease_until: datetime | None = None
    fingerprint: str = ""  # of the request a key was given with
    inline: bool = False
    revision: int = 0
    finished_at: datetime | None = None

    @property
    def processed(self) -> int:
        return self.succeeded + self.failed


class BatchStore(Protocol):
    async def batch_job(self, owner: str, job_id: str) -> BatchJob | None: ...

    async def create_batch_job(
        self, job: BatchJob, *, max_active: int, message: OwedJob | None
    ) -> str | None:
        """Stores a new job (and, for a queued one, counts it among the owner's active jobs
        and keeps its queue ``message`` in the outbox), all or nothing. None when stored;
        else why not: ``exists`` (the id is taken) or ``limit`` (too many active)."""
        ...

    async def save_batch_job(self, job: BatchJob, *, finished: bool) -> BatchJob | None:
        """Stores ``job``'s progress if it is still at the revision it was read at (and,
        ``finished``, gives its place among the owner's active jobs back); the stored job, or
        None when another writer changed it first."""
        ...


@dataclass(slots=True)
class _Chunk:
    image_ids: list[str] = field(default_factory=list)
    next_position: int | CursorPosition | None = None


def batch_message(job: BatchJob) -> dict[str, Any]:
    return {"type": JOB_TYPE, "user_id": job.owner, "job_id": job.job_id}


class BatchOps:
    def __init__(
        self,
        *,
        library: Library,
        trash: Trash,
        listing: Listing,
        store: BatchStore,
        jobs: Jobs,
        outbox: Outbox,
        clock: Clock = utc_now,
    ) -> None:
        self._library = library
        self._trash = trash
        self._listing = listing
        self._store = store
        self._jobs = jobs
        self._outbox = outbox
        self._clock = clock

    # -- the API's side ------------------------------------------------------------------------

    async def submit(
        self,
        principal: Principal,
        user_id: str | None,
        request: BatchRequest,
        *,
        idempotency_key: str | None,
    ) -> BatchJob:
        """Runs an inline batch now, or queues a job; with a key, answers a retry with what
        the first call did."""
        owner = owner_for(principal, user_id)
        if request.op in {"delete", "restore"}:  # what DELETE and restore need, one by one
            require_scope(principal, "images:delete")
        if idempotency_key is not None:
            check_idempotency_key(idempotency_key)
        request = _checked(request)
        fingerprint = request.fingerprint
        job_id = _job_id(owner, idempotency_key)
        if idempotency_key is not None:
            earlier = await self._store.batch_job(owner, job_id)
            if earlier is not None:
                return _replayed(earlier, fingerprint)
        now = self._clock()
        if request.inline:
            return await self._run_inline(owner, job_id, request, fingerprint, idempotency_key)
        job = BatchJob(
            job_id=job_id,
            owner=owner,
            request=request,
            state=QUEUED,
            created_at=now,
            updated_at=now,
            total=None if request.tag is not None else len(request.image_ids),
            position=None if request.tag is not None else 0,
            fingerprint=fingerprint,
        )
        message = OwedJob(owner, f"batch.{job_id}", batch_message(job))
        refused = await self._store.create_batch_job(
            job, max_active=MAX_ACTIVE_JOBS, message=message
        )
        if refused == "exists":  # a twin keyed request stored it first
            stored = await self._store.batch_job(owner, job_id)
            if stored is None:
                raise Conflict("The job changed meanwhile; try again.", code="concurrent_update")
            return _replayed(stored, fingerprint)
        if refused == "limit":
            raise Conflict(
                f"At most {MAX_ACTIVE_JOBS} bulk jobs may be queued or running at once.",
                code="too_many_jobs",
                details={"limit": MAX_ACTIVE_JOBS},
            )
        try:
            await self._jobs.send(message.job)
        except BackendUnavailable:
            log.warning("batch job %s/%s left to the relay: the queue refused it", owner, job_id)
            return job
        await self._outbox.drop_jobs([message])
        return job

    async def job(self, principal: Principal, user_id: str | None, job_id: str) -> BatchJob:
        owner = owner_for(principal, user_id)
        job = await self._store.batch_job(owner, job_id)
        if job is None or job.inline:
            raise JobNotFound(job_id)
        return job

    async def _run_inline(
        self,
        owner: str,
        job_id: str,
        request: BatchRequest,
        fingerprint: str,
        idempotency_key: str | None,
    ) -> BatchJob:
        results = await self._apply_all(owner, request, list(request.image_ids))
        now = self._clock()
        failed = sum(1 for _, result in results if result != OK)
        answer = BatchJob(
            job_id=job_id,
            owner=owner,
            request=request,
            state=DONE,
            created_at=now,
            updated_at=now,
            total=len(results),
            succeeded=len(results) - failed,
            failed=failed,
            results=tuple(results),
            fingerprint=fingerprint,
            inline=True,
            finished_at=now,
        )
        if idempotency_key is not None:
            refused = await self._store.create_batch_job(answer, max_active=0, message=None)
            if refused == "exists":  # a twin got there first: its answer is the answer
                stored = await self._store.batch_job(owner, job_id)
                if stored is not None:
                    return _replayed(stored, fingerprint)
        return answer

    # -- the worker's side ---------------------------------------------------------------------

    async def work(self, owner: str, job_id: str) -> None:
        """Runs a job from where it stands to its end, a chunk at a time."""
        job = await self._store.batch_job(owner, job_id)
        if job is None or job.state == DONE or job.inline:
            return  # done already (a duplicate message), or expired
        now = self._clock()
        if job.state == RUNNING and job.lease_until is not None and job.lease_until > now:
            # Another worker holds it (a duplicate message): back when its lease has run out,
            # in case that worker is gone by then.
            wait = (job.lease_until - now).total_seconds()
            await self._jobs.send(batch_message(job), delay_seconds=min(900, math.ceil(wait) + 1))
            return
        held = await self._store.save_batch_job(
            replace(job, state=RUNNING, lease_until=now + _LEASE, updated_at=now), finished=False
        )
        if held is None:
            return  # another worker took it between the read and the write: theirs now
        try:
            await self._run(held)
        except BackendUnavailable as outage:
            # Not a failure of the job: it waits the outage out on the queue, and its place
            # among the owner's active jobs stays taken until it ends.
            log.warning("batch job %s/%s put back: %s", owner, job_id, outage.reason)
            await self._jobs.send(batch_message(held), delay_seconds=RETRY_SECONDS)

    async def _run(self, job: BatchJob) -> None:
        while True:
            chunk = await self._chunk(job)
            results = await self._apply_all(job.owner, job.request, chunk.image_ids)
            failures = [(image_id, result) for image_id, result in results if result != OK]
            now = self._clock()
            finished = chunk.next_position is None
            advanced = replace(
                job,
                succeeded=job.succeeded + len(results) - len(failures),
                failed=job.failed + len(failures),
                results=(job.results + tuple(failures))[:MAX_KEPT_ERRORS],
                position=chunk.next_position,
                updated_at=now,
                lease_until=None if finished else now + _LEASE,
            )
            if finished:
                advanced = replace(advanced, state=DONE, total=advanced.processed, finished_at=now)
            saved = await self._store.save_batch_job(advanced, finished=finished)
            if saved is None:
                log.warning("batch job %s/%s: lost its lease", job.owner, job.job_id)
                return  # another worker took it over (this one stalled past its lease)
            if finished:
                log.info(
                    "batch job %s/%s done: %d ok, %d failed",
                    job.owner,
                    job.job_id,
                    saved.succeeded,
                    saved.failed,
                )
                return
            job = saved

    async def _chunk(self, job: BatchJob) -> _Chunk:
        request = job.request
        if request.tag is None:
            start = job.position if isinstance(job.position, int) else 0
            end = start + CHUNK
            ids = list(request.image_ids[start:end])
            return _Chunk(ids, end if end < len(request.image_ids) else None)
        after = job.position if isinstance(job.position, CursorPosition) else None
        # Restore works on the trash; everything else on the images listed by the tag.
        status = ImageStatus.TRASHED if request.op == "restore" else None
        records, next_position = await self._listing.list_page(
            job.owner, ListFilter(tags=(request.tag,), status=status), CHUNK, after
        )
        return _Chunk([record.image_id for record in records], next_position)

    async def _apply_all(
        self, owner: str, request: BatchRequest, image_ids: Sequence[str]
    ) -> list[tuple[str, str]]:
        acting = Principal(user_id=owner)

        async def one(image_id: str) -> tuple[str, str]:
            return image_id, await self._apply(acting, request, image_id)

        return await bounded_gather(image_ids, one)

    async def _apply(self, principal: Principal, request: BatchRequest, image_id: str) -> str:
        """What the image's own call would do; ``ok`` or its error code. An outage is
        raised: the whole call (or the job's chunk) is retried, each image's change being
        safe to apply again."""
        try:
            if request.op == "tag":
                await self._library.retag(principal, image_id, None, add=request.tags)
            elif request.op == "untag":
                await self._library.retag(principal, image_id, None, remove=request.tags)
            elif request.op == "delete":
                await self._trash.delete(principal, image_id, None, permanent=request.permanent)
            elif request.op == "restore":
                await self._trash.restore(principal, image_id, None)
            else:
                await self._library.update(
                    principal, image_id, None, tags=None, description=None, focal=request.focal
                )
        except ServiceError as exc:
            if exc.http_status >= 500:
                raise
            return exc.code
        return OK


_LEASE = timedelta(seconds=LEASE_SECONDS)


def _checked(request: BatchRequest) -> BatchRequest:
    """The request's rules the schema cannot say: one selection, and each op's own fields."""
    if (request.tag is None) == (not request.image_ids):
        raise InvalidRequest("Give image_ids or tag, one of them.", code="invalid_selection")
    if len(set(request.image_ids)) != len(request.image_ids):
        raise InvalidRequest("An image id is named twice.", code="invalid_selection")
    if request.op in {"tag", "untag"} and not request.tags:
        raise InvalidRequest(f"{request.op} needs tags.", code="validation_error")
    if request.op not in {"tag", "untag"} and request.tags:
        raise InvalidRequest(f"{request.op} takes no tags.", code="validation_error")
    if request.permanent and request.op != "delete":
        raise InvalidRequest("permanent goes with delete.", code="validation_error")
    return replace(request, tags=tuple(normalize_tags(request.tags)))


def _job_id(owner: str, idempotency_key: str | None) -> str:
    """A keyed request's id is its key's (per owner): a retry finds what the first did."""
    if idempotency_key is None:
        return uuid.uuid4().hex[:16]
    return hashlib.sha256(f"{owner}\n{idempotency_key}".encode()).hexdigest()[:16]


def _replayed(earlier: BatchJob, fingerprint: str) -> BatchJob:
    if earlier.fingerprint != fingerprint:
        raise InvalidRequest(
            "This Idempotency-Key was used with another request.",
            code="idempotency_key_reused",
        )
    return earlier
