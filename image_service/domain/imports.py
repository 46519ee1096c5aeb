"""Import by URL: an image whose bytes the service fetches itself, from where they already are
(an old site, a partner's feed, a migration), instead of the client downloading and uploading.

``POST /images/import`` checks what it can at once (the URL's form, and that its host is a
public address), spends the caller's import rate and checks the owner's quota and imports in
flight (``max_imports_per_user``, counted on the status index, which may lag a moment: the rate
bounds what a burst slips through), then stores the image as ``fetching`` and queues its import
job; it answers 202 with the image. The API
process never fetches anything.

The worker fetches the URL (``worker/fetch.py``: SSRF-safe), puts the bytes where an upload
would have put them, and completes the image exactly as an upload is completed: magic bytes,
a full decode, pixel limits, the size limit, the quota, then scanning, moderation and
processing. A fetch that is refused ends the image ``rejected`` with its reason:
``fetch_refused`` (a private address, too many redirects), ``fetch_failed`` (the server's
error, a timeout, a broken connection), ``too_large``, ``not_an_image``; after the fetch,
completion's own reasons.

A job lost on the way (the queue refused it, a worker died) is queued again by the sweeper,
which finds images ``fetching`` for longer than a fetch can take. With an Idempotency-Key the
image's id is the key's (per owner): a retry answers the same image, never a second fetch.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from image_service.domain import events
from image_service.domain.callbacks import url_refusal
from image_service.domain.completion import Completion
from image_service.domain.errors import (
    BackendUnavailable,
    InvalidRequest,
    ServiceError,
    TooManyHeld,
)
from image_service.domain.events import ImageEvents
from image_service.domain.layout import incoming_key, original_key
from image_service.domain.models import ImageRecord, ImageStatus, Principal, normalize_tags
from image_service.domain.owners import owner_for
from image_service.domain.policy import UploadPolicy
from image_service.domain.ports import Clock, Jobs, Objects, Records, utc_now
from image_service.domain.quota import Quota
from image_service.domain.ratelimit import TokenBucketLimiter
from image_service.domain.uploads import check_idempotency_key
from image_service.imaging.formats import content_type_from_magic
from image_service.imaging.spool import Spooled

log = logging.getLogger(__name__)

MAX_URL_LENGTH = 2048
IMPORT_JOB = "import"
# What an imported image is stored as until its bytes say what it is.
UNKNOWN_TYPE = "application/octet-stream"
_HEAD_BYTES = 64  # enough for every magic number content_type_from_magic knows


class FetchRefused(Exception):
    """A fetch that will not give an image: ``code`` is the image's rejection reason."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Fetcher(Protocol):
    async def fetch(self, url: str, *, max_bytes: int) -> Spooled: ...


@dataclass(frozen=True, slots=True)
class ImportRequest:
    url: str
    tags: Sequence[str] = ()
    description: str = ""
    filename: str | None = None
    user_id: str | None = None  # an admin importing for another user


def import_job(record: ImageRecord) -> dict[str, str]:
    return {"type": IMPORT_JOB, "user_id": record.user_id, "image_id": record.image_id}


class Imports:
    def __init__(
        self,
        *,
        store: Objects,
        repository: Records,
        jobs: Jobs,
        completion: Completion,
        policy: UploadPolicy,
        quota: Quota,
        limiter: TokenBucketLimiter,
        events: ImageEvents,
        allow_private: bool,
        fetcher: Fetcher | None = None,  # the worker's; the API never fetches
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._repository = repository
        self._jobs = jobs
        self._completion = completion
        self._policy = policy
        self._quota = quota
        self._limiter = limiter
        self._events = events
        self._allow_private = allow_private
        self._fetcher = fetcher
        self._clock = clock

    # -- the API's side ------------------------------------------------------------------------

    async def start(
        self, principal: Principal, request: ImportRequest, *, idempotency_key: str | None
    ) -> ImageRecord:
        """The new image, ``fetching``, its job queued; or a keyed retry's image."""
        owner = owner_for(principal, request.user_id)
        image_id = str(uuid.uuid4())
        if idempotency_key is not None:
            check_idempotency_key(idempotency_key)
            image_id = _keyed_id(owner, idempotency_key)
            earlier = await self._repository.get(owner, image_id)
            if earlier is not None:
                return _replayed(earlier, request)
        # Counted against the caller: an admin importing for others spends their own budget.
        self._limiter.take(principal.user_id)
        refusal = await url_refusal(request.url, allow_private=self._allow_private)
        if refusal is not None:
            raise InvalidRequest(
                f"This URL cannot be imported: {refusal}.",
                code="import_refused",
                details={"reason": refusal},
            )
        await self._quota.check(owner, 0)
        held = self._policy.max_imports_per_user
        if await self._repository.fetching_count(owner, up_to=held) >= held:
            raise TooManyHeld("too_many_imports", "imports being fetched", held)
        now = self._clock()
        record = ImageRecord(
            user_id=owner,
            image_id=image_id,
            s3_key=original_key(owner, image_id),
            content_type=UNKNOWN_TYPE,
            status=ImageStatus.FETCHING,
            upload_time=now,
            updated_at=now,
            tags=normalize_tags(request.tags),
            description=request.description,
            filename=request.filename,
            source_url=request.url,
        )
        stored = await self._repository.create_if_absent(record)
        if stored is None:  # a concurrent twin with the same key stored it first
            twin = await self._repository.get(owner, image_id)
            if twin is None:
                raise InvalidRequest("The image changed meanwhile.", code="idempotency_conflict")
            return _replayed(twin, request)
        try:
            await self._jobs.send(import_job(stored))
        except BackendUnavailable as outage:
            # The image is stored: the sweeper queues its job again once the queue is back.
            log.warning("import of %s/%s left to the sweeper: %s", owner, image_id, outage.reason)
        return stored

    # -- the worker's side ---------------------------------------------------------------------

    async def fetch(self, owner: str, image_id: str) -> None:
        """Fetches an image being imported, then completes it as an upload is completed."""
        record = await self._repository.get(owner, image_id)
        if record is None:
            return  # deleted meanwhile
        if record.status is ImageStatus.PENDING and record.source_url is not None:
            # Fetched, then cut short before its completion (a worker died): the job is
            # delivered again, and completes it now.
            await self._complete(owner, image_id)
            return
        if record.status is not ImageStatus.FETCHING:
            return  # done already (a redelivered job)
        assert self._fetcher is not None, "imports are fetched by workers"
        assert record.source_url is not None
        try:
            fetched = await self._fetcher.fetch(
                record.source_url, max_bytes=self._policy.max_upload_bytes
            )
        except FetchRefused as refused:
            await self._refuse(record, refused.code, refused.reason)
            return
        with fetched:
            content_type = content_type_from_magic(fetched.file.read(_HEAD_BYTES))
            fetched.file.seek(0)
            if content_type not in self._policy.allowed_content_types:
                await self._refuse(record, "not_an_image", f"its bytes are {content_type}")
                return
            upload_key = incoming_key(record)
            await self._store.put_bytes(upload_key, fetched.file, content_type=content_type)
            size = fetched.size
        pending = replace(
            record,
            status=ImageStatus.PENDING,
            content_type=content_type,
            declared_size=size,
            updated_at=self._clock(),
        )
        if not await self._repository.replace_if_status(pending, ImageStatus.FETCHING):
            await self._store.delete([upload_key])  # deleted while it was fetched
            return
        await self._complete(owner, image_id)

    async def _complete(self, owner: str, image_id: str) -> None:
        """Completes the fetched image as an upload is completed; its refusal is its outcome."""
        try:
            await self._completion.complete_for(owner, image_id)
        except ServiceError as exc:
            if exc.http_status >= 500:
                raise  # an outage: the job is retried, and completes the pending image
            log.info("import of %s/%s refused at completion: %s", owner, image_id, exc.code)

    async def _refuse(self, record: ImageRecord, code: str, reason: str) -> None:
        log.info("import of %s/%s refused: %s (%s)", record.user_id, record.image_id, code, reason)
        rejected = replace(
            record, status=ImageStatus.REJECTED, rejection_reason=code, updated_at=self._clock()
        )
        owed = self._events.owe(events.REJECTED, rejected)
        if await self._repository.replace_if_status(rejected, ImageStatus.FETCHING, owed=owed):
            await self._events.delivered(owed, rejected)


def _keyed_id(owner: str, key: str) -> str:
    """The image id a keyed import gets: the same for the same owner and key."""
    digest = hashlib.sha256(f"import\n{owner}\n{key}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def _replayed(earlier: ImageRecord, request: ImportRequest) -> ImageRecord:
    if earlier.source_url != request.url:
        raise InvalidRequest(
            "This Idempotency-Key was used with another request.",
            code="idempotency_key_reused",
        )
    return earlier
