"""The image lifecycle: upload URL, completion, reads, edits, listing, download, delete."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import aclosing
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn
from urllib.parse import quote

from cachetools import TTLCache

from image_service.domain import events
from image_service.domain.callbacks import callback_refusal
from image_service.domain.cursor import CursorCodec
from image_service.domain.events import ImageEvents
from image_service.domain.holds import Holds, SharedSlots
from image_service.domain.layout import (
    image_prefix,
    incoming_key,
    original_key,
    quarantine_key,
)
from image_service.domain.ratelimit import TokenBucketLimiter
from image_service.domain.watch import IN_FLIGHT, StatusWatcher
from image_service.errors import (
    BackendUnavailable,
    Conflict,
    Forbidden,
    ImageNotFound,
    InvalidRequest,
    QuotaExceeded,
    TooManyHeld,
    UploadRejected,
)
from image_service.formats import FILE_EXTENSIONS
from image_service.imaging.inspect import (
    ImageRejected,
    InspectionLimits,
    inspect_image,
)
from image_service.models import (
    MAX_PART_BYTES,
    MIN_PART_BYTES,
    IdempotentUpload,
    ImagePage,
    ImageRecord,
    ImageStatus,
    ListFilter,
    MultipartProgress,
    OwnedDigest,
    PartUpload,
    PresignedDownload,
    PresignedUpload,
    Principal,
    Usage,
)
from image_service.spool import spool
from image_service.storage.dynamo import IdempotencyStore, ImageRepository
from image_service.storage.queue import JobQueue
from image_service.storage.s3 import ObjectStore, StoredObject

log = logging.getLogger(__name__)

_UNSAFE_FILENAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_FILENAME_STEM = 100
# S3 takes up to 10,000 parts; the service takes 1,000, so that a record with every part's
# checksum stays a few tens of KiB.
MAX_PARTS = 1000
# Trashed images read per page while the trash is emptied.
_TRASH_PAGE = 100
# Digests one check may ask about.
MAX_CHECKED_DIGESTS = 500


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class UploadPolicy:
    allowed_content_types: tuple[str, ...]
    max_upload_bytes: int
    max_multipart_bytes: int
    multipart_part_bytes: int  # when the client names no part size
    upload_url_expiry: int
    download_url_expiry: int
    inspection: InspectionLimits
    inspection_concurrency: int
    max_images_per_user: int
    max_bytes_per_user: int
    # Upload URLs are checked against a usage figure at most this old; completion is exact.
    usage_cache_seconds: float
    # Whether a callback_url may name loopback, link-local or private addresses.
    callbacks_to_private: bool = False
    # A DELETE moves an image to the trash for this many days; 0: deletes at once.
    trash_days: int = 0
    # Completions one user may have running at once (each spools its upload to disk).
    max_completions_per_user: int = 16
    # Multipart uploads one user may have open (pending) at once.
    max_open_multipart_per_user: int = 10
    # Whether processing keeps GPS in originals (else only a JPEG's is removed).
    keep_gps: bool = False


@dataclass(frozen=True, slots=True)
class UploadRequest:
    content_type: str
    method: str = "PUT"
    size: int | None = None
    tags: Sequence[str] = ()
    description: str = ""
    checksum_sha256: str | None = None
    filename: str | None = None
    user_id: str | None = None
    # MULTIPART only: the part size (else the policy's) and, optionally, each part's SHA-256.
    part_size: int | None = None
    part_checksums: Sequence[str] = ()
    # "return": when the caller already has an image of these bytes (checksum_sha256), that
    # image is the answer instead of a new upload.
    if_exists: str = "create"
    callback_url: str | None = None


def part_sizes(size: int, part_size: int) -> list[int]:
    """The length of each part of ``size`` bytes cut into ``part_size`` parts (the last, less)."""
    full, rest = divmod(size, part_size)
    return [part_size] * full + ([rest] if rest else [])


def multipart_sizes(record: ImageRecord) -> tuple[str, list[int]]:
    """A pending multipart record's upload id and the length of each of its parts."""
    if record.upload_id is None or record.part_size is None or record.declared_size is None:
        raise AssertionError(f"{record.image_id} is not a multipart upload")
    return record.upload_id, part_sizes(record.declared_size, record.part_size)


def hex_digest(checksum: str) -> str:
    """A SHA-256 written as 64 hex digits or as base64 (S3's form), as 64 lowercase hex."""
    if len(checksum) == 64:
        return checksum.lower()
    return base64.b64decode(checksum, validate=True).hex()


def process_job(record: ImageRecord) -> dict[str, str]:
    return {"type": "process", "user_id": record.user_id, "image_id": record.image_id}


def reprocess_job(record: ImageRecord, *, force: bool = False) -> dict[str, str | bool]:
    """A ready image brought up to the current processing; ``force``: even if it is."""
    job: dict[str, str | bool] = {
        "type": "reprocess",
        "user_id": record.user_id,
        "image_id": record.image_id,
    }
    if force:
        job["force"] = True
    return job


_MAX_CACHED_USAGES = 100_000
# States a completion leads to: once there, completing again answers the record as it is.
_COMPLETED = frozenset({ImageStatus.PROCESSING, ImageStatus.READY, ImageStatus.QUARANTINED})
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
# What a DELETE moves to the trash: images with bytes worth keeping. A pending or rejected
# upload has nothing to restore, and is deleted at once.
TRASHABLE = frozenset({ImageStatus.READY, ImageStatus.PROCESSING, ImageStatus.QUARANTINED})


def _fingerprint(request: UploadRequest) -> str:
    body = asdict(request)
    body["tags"] = list(request.tags)
    body["part_checksums"] = list(request.part_checksums)
    # Fields added since keys were first fingerprinted count only when used, so a retry
    # spanning an upgrade still matches its first attempt.
    for name, unset in (
        ("part_size", None),
        ("part_checksums", []),
        ("if_exists", "create"),
        ("callback_url", None),
    ):
        if body[name] == unset:
            del body[name]
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def refusal(record: ImageRecord) -> UploadRejected | QuotaExceeded:
    """What completing a rejected upload answers, whichever completion decided it (the
    client's, or S3's event through the worker): the same status and code as the decision."""
    reason = record.rejection_reason or UploadRejected.code
    details = {"image_id": record.image_id, "reason": reason}
    if reason == QuotaExceeded.code:
        return QuotaExceeded("This upload would exceed the owner's quota.", details=details)
    return UploadRejected(
        "What was uploaded was refused; request a new upload URL.", code=reason, details=details
    )


def _in_the_trash() -> Conflict:
    return Conflict(
        "This image is in the trash: restore it; an upload cannot replace it.",
        code="image_trashed",
        details={"status": ImageStatus.TRASHED.value},
    )


def normalize_tags(tags: Sequence[str]) -> list[str]:
    """Lowercase, first occurrence kept: ``["Cat", "cat", "Dog"]`` is ``["cat", "dog"]``."""
    return list(dict.fromkeys(tag.lower() for tag in tags))


def content_disposition(
    record: ImageRecord, content_type: str | None = None, *, suffix: str | None = None
) -> str:
    """An attachment header with an ASCII-safe name whose extension matches the served type."""
    extension = FILE_EXTENSIONS[content_type or record.content_type]
    # Only the last path segment of whatever name the client gave: never a directory.
    original = (record.filename or "").replace("\\", "/").rsplit("/", 1)[-1] or record.image_id
    stem = original.rsplit(".", 1)[0] if "." in original else original
    if suffix:
        stem = f"{stem}-{suffix}"
    safe_stem = _UNSAFE_FILENAME_CHARS.sub("_", stem).strip("._")[:_MAX_FILENAME_STEM]
    ascii_name = (safe_stem or record.image_id) + extension
    utf8_name = quote(stem[:_MAX_FILENAME_STEM] + extension, safe="")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{utf8_name}"


class ImageService:
    def __init__(
        self,
        *,
        store: ObjectStore,
        repository: ImageRepository,
        idempotency: IdempotencyStore,
        jobs: JobQueue,
        cursors: CursorCodec,
        policy: UploadPolicy,
        upload_limiter: TokenBucketLimiter,
        events: ImageEvents,
        watcher: StatusWatcher | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.events = events
        self._watcher = watcher
        self._store = store
        self._repository = repository
        self._idempotency = idempotency
        self._jobs = jobs
        self._cursors = cursors
        self._policy = policy
        self._clock = clock
        self._upload_limiter = upload_limiter
        # Full decodes are CPU- and memory-heavy: a bounded number run at once, off the loop,
        # and no user holds them all.
        self._inspections = SharedSlots(policy.inspection_concurrency)
        self._completions = Holds(
            resource="completions",
            code="too_many_completions",
            per_user=policy.max_completions_per_user,
        )
        # owner -> usage, for a few seconds: keeps the upload-URL path free of a read per request.
        self._usage_cache: TTLCache[str, Usage] = TTLCache(
            maxsize=_MAX_CACHED_USAGES, ttl=policy.usage_cache_seconds, timer=time.monotonic
        )

    # -- who acts for whom ---------------------------------------------------------------------

    @staticmethod
    def owner_for(principal: Principal, user_id: str | None) -> str:
        """The user whose images a request touches: the caller, or anyone for an admin."""
        if user_id is None or user_id == principal.user_id:
            return principal.user_id
        if principal.is_admin:
            return user_id
        raise Forbidden("Only an admin may act for another user.", details={"user_id": user_id})

    def callback_secret(self, principal: Principal, user_id: str | None) -> str:
        """The key that signs the owner's callbacks, for them (or an admin) to verify with."""
        secret = self.events.callback_secret(self.owner_for(principal, user_id))
        if secret is None:
            raise Conflict(
                "This service sends no webhooks (IMAGE_SERVICE_WEBHOOK_SECRET is unset).",
                code="webhooks_not_configured",
            )
        return secret

    async def _owned(self, owner: str, image_id: str) -> ImageRecord:
        record = await self._repository.get(owner, image_id)
        if record is None:
            raise ImageNotFound(image_id)
        return record

    # -- upload ---------------------------------------------------------------------------------

    async def create_upload(
        self, principal: Principal, request: UploadRequest, *, idempotency_key: str | None = None
    ) -> tuple[ImageRecord, PresignedUpload | None]:
        """A new pending image and its upload URL. With an idempotency key, a retry of the same
        request (until its URL expires) answers the same image and URL instead of a new one.
        With ``if_exists="return"``, an image the owner already has of the same bytes is the
        answer, with no URL (None)."""
        owner = self.owner_for(principal, request.user_id)
        if request.if_exists == "return":
            if request.checksum_sha256 is None:
                raise InvalidRequest(
                    'if_exists "return" needs checksum_sha256: the bytes to look for.',
                    code="checksum_required",
                )
            existing = await self._existing(owner, hex_digest(request.checksum_sha256))
            if existing is not None:
                return existing, None
        if idempotency_key is None:
            return await self._new_upload(principal, owner, request)
        if not _IDEMPOTENCY_KEY.match(idempotency_key):
            raise InvalidRequest(
                "Idempotency-Key must be 1-255 printable ASCII characters.",
                code="invalid_idempotency_key",
            )
        fingerprint = _fingerprint(request)
        replay = await self._replay(principal, idempotency_key, fingerprint)
        if replay is not None:
            return replay
        record, upload = await self._new_upload(principal, owner, request)
        entry = IdempotentUpload(fingerprint, record.user_id, record.image_id, upload)
        if await self._idempotency.put(principal.user_id, idempotency_key, entry, self._clock()):
            return record, upload
        # A concurrent twin stored its answer first: answer as it did, and drop ours.
        await self._repository.delete(record)
        replay = await self._replay(principal, idempotency_key, fingerprint)
        if replay is None:
            raise Conflict(
                "The request is being retried concurrently.", code="idempotency_conflict"
            )
        return replay

    async def _replay(
        self, principal: Principal, key: str, fingerprint: str
    ) -> tuple[ImageRecord, PresignedUpload] | None:
        stored = await self._idempotency.get(principal.user_id, key, self._clock())
        if stored is None:
            return None
        if stored.fingerprint != fingerprint:
            raise InvalidRequest(
                "This Idempotency-Key was used with another request body.",
                code="idempotency_key_reused",
            )
        record = await self._owned(stored.owner, stored.image_id)
        if stored.upload.method == "MULTIPART":
            # Only the upload's identity is kept with the key (a thousand part URLs would not
            # fit an item); the URLs are signed again from the record, the same parts.
            return record, await self._presign_multipart(record, self._clock())
        return record, stored.upload

    async def _existing(self, owner: str, digest: str) -> ImageRecord | None:
        """The owner's oldest verified image of these bytes, if any."""
        found = await self._repository.images_by_digest(owner, [digest])
        for image_id in found.get(digest, []):
            record = await self._repository.get(owner, image_id)
            if record is not None and record.status in {ImageStatus.PROCESSING, ImageStatus.READY}:
                return record
        return None

    async def check_digests(
        self, principal: Principal, user_id: str | None, checksums: Sequence[str]
    ) -> list[OwnedDigest]:
        """Which of these SHA-256 digests (hex or base64) the owner has an image of: one key
        read of the owner's digest items per hundred digests, whatever the owner keeps."""
        owner = self.owner_for(principal, user_id)
        if len(checksums) > MAX_CHECKED_DIGESTS:
            raise InvalidRequest(
                f"At most {MAX_CHECKED_DIGESTS} digests per check.",
                code="too_many_digests",
                details={"max": MAX_CHECKED_DIGESTS, "given": len(checksums)},
            )
        digests = [hex_digest(checksum) for checksum in checksums]
        found = await self._repository.images_by_digest(owner, list(dict.fromkeys(digests)))
        return [
            OwnedDigest(checksum=checksum, image_id=next(iter(found.get(digest, [])), None))
            for checksum, digest in zip(checksums, digests, strict=True)
        ]

    async def _new_upload(
        self, principal: Principal, owner: str, request: UploadRequest
    ) -> tuple[ImageRecord, PresignedUpload]:
        # Counted against the caller: an admin acting for others spends their own budget.
        self._upload_limiter.take(principal.user_id)
        policy = self._policy
        content_type = request.content_type.lower()
        if content_type not in policy.allowed_content_types:
            raise InvalidRequest(
                f"Content type {request.content_type!r} is not accepted.",
                code="unsupported_content_type",
                details={"allowed": list(policy.allowed_content_types)},
            )
        multipart = request.method == "MULTIPART"
        part_size = self._checked_parts(request) if multipart else None
        if not multipart and request.size is not None and request.size > policy.max_upload_bytes:
            raise InvalidRequest(
                "The declared size exceeds the maximum upload size.",
                code="file_too_large",
                details={
                    "size": request.size,
                    "max_upload_bytes": policy.max_upload_bytes,
                    "hint": 'Larger images upload in parts: "method": "MULTIPART".',
                },
            )
        await self._check_quota(owner, request.size or 0)
        if multipart:
            await self._check_open_multipart(owner, request.size or 0)
        if request.callback_url is not None:
            await self._check_callback(request.callback_url)

        now = self._clock()
        image_id = str(uuid.uuid4())
        record = ImageRecord(
            user_id=owner,
            image_id=image_id,
            s3_key=original_key(owner, image_id),
            content_type=content_type,
            status=ImageStatus.PENDING,
            upload_time=now,
            updated_at=now,
            tags=normalize_tags(request.tags),
            description=request.description,
            filename=request.filename,
            declared_size=request.size,
            declared_checksum_sha256=request.checksum_sha256,
            callback_url=request.callback_url,
        )
        if multipart:
            # S3's upload first, then the record, then the URLs: a URL is only ever handed out
            # for a stored record (an upload whose record failed is aborted by the lifecycle).
            upload_id = await self._store.create_multipart(
                incoming_key(record),
                content_type=content_type,
                checksums=bool(request.part_checksums),
            )
            record = replace(
                record,
                upload_id=upload_id,
                part_size=part_size,
                part_checksums=list(request.part_checksums),
            )
            record = await self._repository.create(record)
            return record, await self._presign_multipart(record, now)
        upload = await self._presign_upload(record, request.method, now)
        # Written after signing (which does no I/O): a URL is only handed out for a stored record.
        record = await self._repository.create(record)
        return record, upload

    async def _check_callback(self, url: str) -> None:
        if not self.events.signing:
            raise InvalidRequest(
                "This service sends no webhooks (IMAGE_SERVICE_WEBHOOK_SECRET is unset).",
                code="webhooks_not_configured",
            )
        refusal = await callback_refusal(url, allow_private=self._policy.callbacks_to_private)
        if refusal is not None:
            raise InvalidRequest(
                f"callback_url is not allowed: {refusal}.",
                code="callback_url_not_allowed",
                details={"reason": refusal},
            )

    def _checked_parts(self, request: UploadRequest) -> int:
        """A multipart request's part size, once its size, parts and checksums are in bounds."""
        policy = self._policy
        if request.size is None:
            raise InvalidRequest("A multipart upload declares its size.", code="size_required")
        if request.size > policy.max_multipart_bytes:
            raise InvalidRequest(
                "The declared size exceeds the maximum multipart upload size.",
                code="file_too_large",
                details={"size": request.size, "max_multipart_bytes": policy.max_multipart_bytes},
            )
        part_size = request.part_size or policy.multipart_part_bytes
        if not MIN_PART_BYTES <= part_size <= MAX_PART_BYTES:
            raise InvalidRequest(
                "A part is 5 MiB to 5 GiB.",
                code="invalid_part_size",
                details={"min_part_size": MIN_PART_BYTES, "max_part_size": MAX_PART_BYTES},
            )
        parts = len(part_sizes(request.size, part_size))
        if parts > MAX_PARTS:
            raise InvalidRequest(
                f"At most {MAX_PARTS} parts: choose a larger part size.",
                code="too_many_parts",
                details={"parts": parts, "min_part_size": -(-request.size // MAX_PARTS)},
            )
        if request.part_checksums and len(request.part_checksums) != parts:
            raise InvalidRequest(
                "Give one checksum per part, or none.",
                code="part_checksums_mismatch",
                details={"parts": parts, "part_checksums": len(request.part_checksums)},
            )
        return part_size

    async def _check_quota(self, owner: str, size: int) -> None:
        policy = self._policy
        usage = self._usage_cache.get(owner)
        if usage is None:
            usage = await self._repository.usage(owner)
            self._usage_cache[owner] = usage
        if usage.images >= policy.max_images_per_user or (
            usage.bytes + size > policy.max_bytes_per_user
        ):
            raise QuotaExceeded(
                "The owner's image quota is used up.",
                details={
                    "images": usage.images,
                    "bytes": usage.bytes,
                    "max_images": policy.max_images_per_user,
                    "max_bytes": policy.max_bytes_per_user,
                },
            )

    async def _check_open_multipart(self, owner: str, size: int) -> None:
        """A multipart upload holds its parts in S3 (up to max_multipart_bytes) from its first
        part on: each user has a few open at once, and their declared bytes count against the
        byte quota before they are complete."""
        policy = self._policy
        open_uploads = await self._repository.open_multipart(owner)
        if len(open_uploads) >= policy.max_open_multipart_per_user:
            raise TooManyHeld(
                "too_many_multipart_uploads",
                "open multipart uploads",
                policy.max_open_multipart_per_user,
            )
        pending = sum(record.declared_size or 0 for record in open_uploads)
        usage = await self._repository.usage(owner)
        if usage.bytes + pending + size > policy.max_bytes_per_user:
            raise QuotaExceeded(
                "The owner's byte quota, with the multipart uploads under way, has no room.",
                details={
                    "bytes": usage.bytes,
                    "pending_multipart_bytes": pending,
                    "max_bytes": policy.max_bytes_per_user,
                },
            )

    async def _presign_upload(
        self, record: ImageRecord, method: str, now: datetime
    ) -> PresignedUpload:
        policy = self._policy
        expires_at = now + timedelta(seconds=policy.upload_url_expiry)
        key = incoming_key(record)
        if method == "POST":
            size = record.declared_size
            post = await self._store.presign_post(
                key,
                content_type=record.content_type,
                expires_in=policy.upload_url_expiry,
                min_size=size if size is not None else 1,
                max_size=size if size is not None else policy.max_upload_bytes,
                checksum_sha256=record.declared_checksum_sha256,
            )
            return PresignedUpload(post.url, "POST", {}, post.fields, expires_at)
        put = await self._store.presign_put(
            key,
            content_type=record.content_type,
            expires_in=policy.upload_url_expiry,
            size=record.declared_size,
            checksum_sha256=record.declared_checksum_sha256,
            # Signing If-None-Match makes every client send it. A client that declares its size
            # uses the full contract; one that does not is the original API's
            # `curl -H "Content-Type: ..."` flow, which must keep working as written. Either way
            # a verified image cannot be replaced: completion copies it out of the upload key.
            refuse_overwrite=record.declared_size is not None,
        )
        return PresignedUpload(put.url, "PUT", put.headers, {}, expires_at)

    async def _presign_multipart(
        self, record: ImageRecord, now: datetime, numbers: Sequence[int] | None = None
    ) -> PresignedUpload:
        """URLs for the parts ``numbers`` (all when None) of a pending multipart upload."""
        upload_id, sizes = multipart_sizes(record)
        expiry = self._policy.upload_url_expiry
        parts = []
        for number in numbers if numbers is not None else range(1, len(sizes) + 1):
            signed = await self._store.presign_part(
                incoming_key(record),
                upload_id=upload_id,
                part_number=number,
                size=sizes[number - 1],
                checksum_sha256=(
                    record.part_checksums[number - 1] if record.part_checksums else None
                ),
                expires_in=expiry,
            )
            parts.append(PartUpload(number, sizes[number - 1], signed.url, signed.headers))
        return PresignedUpload(
            url="",
            method="MULTIPART",
            headers={},
            fields={},
            expires_at=now + timedelta(seconds=expiry),
            upload_id=upload_id,
            part_size=sizes[0],
            parts=tuple(parts),
        )

    async def parts(
        self, principal: Principal, image_id: str, user_id: str | None
    ) -> MultipartProgress:
        """Where a multipart upload stands, to resume it: the parts S3 holds, and fresh URLs
        for every part it does not (or holds at another length)."""
        record = await self._owned(self.owner_for(principal, user_id), image_id)
        if record.upload_id is None or record.status is not ImageStatus.PENDING:
            raise Conflict(
                "Only a pending multipart upload has parts to resume.",
                code="not_multipart"
                if record.status is ImageStatus.PENDING
                else "upload_completed",
                details={"status": record.status.value},
            )
        uploaded = await self._store.uploaded_parts(incoming_key(record), record.upload_id)
        if uploaded is None:  # assembled by a completion under way, or aborted
            raise Conflict(
                "The parts were already assembled; complete the upload.",
                code="upload_completed",
                details={"status": record.status.value},
            )
        _, sizes = multipart_sizes(record)
        held = {part.part_number: part for part in uploaded if part.part_number <= len(sizes)}
        complete = {n for n, part in held.items() if part.size == sizes[n - 1]}
        missing = [n for n in range(1, len(sizes) + 1) if n not in complete]
        signed = await self._presign_multipart(record, self._clock(), missing)
        return MultipartProgress(
            upload_id=record.upload_id,
            size=sum(sizes),
            part_size=sizes[0],
            uploaded=tuple(held[n] for n in sorted(complete)),
            missing=signed.parts,
            expires_at=signed.expires_at,
        )

    # -- completion -----------------------------------------------------------------------------

    async def complete(
        self, principal: Principal, image_id: str, user_id: str | None
    ) -> ImageRecord:
        # Each completion reads its upload into a temporary file: bounded per caller here,
        # and per process by the inspection slots (S3's events, through the worker, are paced
        # by the worker's own concurrency).
        with self._completions.held(principal.user_id):
            return await self.complete_for(self.owner_for(principal, user_id), image_id)

    async def complete_for(self, owner: str, image_id: str) -> ImageRecord:
        """Verifies the upload and hands it to processing. Called by the API on the client's
        behalf, and by the worker for S3's own notification of the upload.

        Only a pending upload is completed. Its upload URL may still be live afterwards, but
        whatever is PUT with it then is never read: it is removed here, and completing again
        answers the image as it is (or refuses a trashed or deleted one), never a second
        verification, copy or count."""
        record = await self._owned(owner, image_id)
        if record.status is not ImageStatus.PENDING:
            await self._discard_upload(incoming_key(record))
        if record.status is ImageStatus.PROCESSING:
            # Again: the job may have been lost (the queue was down); one more is harmless.
            await self._jobs.send(process_job(record))
            return record
        if record.status in {ImageStatus.READY, ImageStatus.QUARANTINED}:
            return record
        if record.status is ImageStatus.REJECTED:
            raise refusal(record)
        if record.status is ImageStatus.TRASHED:
            raise _in_the_trash()
        if record.status is not ImageStatus.PENDING:  # deleting: as good as gone
            raise ImageNotFound(image_id)
        try:
            verified, published = await self._complete_pending(owner, record)
        except (Conflict, UploadRejected, BackendUnavailable) as exc:
            # The API and S3's own event may complete the same upload at once; whatever the
            # loser tripped over (a vanished upload key, a failed condition), the winner's
            # result stands and is the answer: the image, or the refusal of what arrived.
            current = await self._repository.get(owner, image_id)
            if current is not None and current.status in _COMPLETED:
                return current
            if (
                not isinstance(exc, UploadRejected)
                and current is not None
                and current.status is ImageStatus.REJECTED
            ):
                raise refusal(current) from exc
            raise
        if verified.status is ImageStatus.REJECTED:  # a concurrent completion refused it
            raise refusal(verified)
        if verified.status is ImageStatus.TRASHED:  # completed by another, then trashed
            raise _in_the_trash()
        if published:
            # Outside the race handling above: a queue that refuses the job must reach the
            # client as a 503 (completing again re-sends it; the sweeper finds the image if
            # nobody does), never as a success with the job lost.
            await self._jobs.send(process_job(verified))
        return verified

    async def _complete_pending(self, owner: str, record: ImageRecord) -> tuple[ImageRecord, bool]:
        """The image once verified and published, and whether this call published it (False:
        a concurrent completion did, and sent its job)."""
        image_id = record.image_id
        upload_key = incoming_key(record)
        if record.upload_id is not None:
            await self._assemble(record, upload_key)
        stored = await self._store.head(upload_key)
        if stored is None:
            current = await self._owned(owner, image_id)
            if current.status is not ImageStatus.PENDING:  # a concurrent completion won
                return current, False
            raise Conflict(
                "Nothing has been uploaded for this image yet.",
                code="upload_missing",
                details={"image_id": image_id},
            )

        await self._check_size(record, stored, upload_key)
        verified = await self._verify_content(record, stored, upload_key)

        await self._store.copy(
            upload_key, record.s3_key, etag=stored.etag, content_type=record.content_type
        )
        verified = replace(verified, counted_bytes=stored.size)
        try:
            published = await self._repository.publish_counted(
                verified,
                ImageStatus.PENDING,
                max_images=self._policy.max_images_per_user,
                max_bytes=self._policy.max_bytes_per_user,
            )
        except QuotaExceeded:
            await self._store.delete([record.s3_key])
            await self._reject_over_quota(record, upload_key)
            raise
        finally:
            self._usage_cache.pop(owner, None)
        if not published:
            now_stored = await self._repository.get(owner, image_id)
            if now_stored is None or now_stored.status is ImageStatus.DELETING:
                # Deleted (or being deleted) while this was verifying: the copy made above may
                # postdate the delete's listing, so it goes, and so does the upload.
                await self._store.delete([record.s3_key, upload_key])
                raise ImageNotFound(image_id)
            if now_stored.status is not ImageStatus.PENDING:
                # A concurrent completion won with the same bytes (and the image may have
                # moved on since: processed, trashed): its answer stands.
                return now_stored, False
            raise Conflict("The image changed during completion.", code="image_changed")
        await self._discard_upload(upload_key)
        return verified, True

    async def _assemble(self, record: ImageRecord, upload_key: str) -> None:
        """Completes a multipart upload on S3 once every part it declared is there, each at its
        length (and with its declared checksum). Already assembled (a concurrent completion,
        or S3's event for it): nothing to do, the object is there."""
        upload_id, sizes = multipart_sizes(record)
        uploaded = await self._store.uploaded_parts(upload_key, upload_id)
        if uploaded is None:
            return
        held = {part.part_number: part for part in uploaded}
        missing = [n for n in range(1, len(sizes) + 1) if n not in held]
        if missing:
            raise Conflict(
                "Some parts have not been uploaded yet; GET /images/{id}/parts lists them.",
                code="parts_missing",
                details={
                    "image_id": record.image_id,
                    "missing": missing[:100],
                    "missing_count": len(missing),
                },
            )
        parts = [held[n] for n in range(1, len(sizes) + 1)]
        # S3 itself refused other lengths and checksums (both signed into the part URLs); an
        # S3 that checks no signature is held to the same contract here.
        wrong_sizes = [p.part_number for p in parts if p.size != sizes[p.part_number - 1]]
        if wrong_sizes:
            await self._reject(
                record,
                upload_key,
                "size_mismatch",
                "Some parts' sizes differ from the declared part size.",
                {"parts": wrong_sizes[:100], "part_size": record.part_size},
            )
        if record.part_checksums:
            # S3 reports the checksum it verified on arrival (moto records none: there, the
            # whole file's checksum, when declared, is the check that remains).
            wrong = [
                p.part_number
                for p in parts
                if p.checksum_sha256 not in {None, record.part_checksums[p.part_number - 1]}
            ]
            if wrong:
                await self._reject(
                    record,
                    upload_key,
                    "checksum_mismatch",
                    "Some parts' bytes do not match their declared SHA-256 checksums.",
                    {"parts": wrong[:100]},
                )
            # A store that does not list the checksums it verified (SeaweedFS) still wants
            # them named on completion: the declared ones, which the part URLs signed.
            parts = [
                part
                if part.checksum_sha256 is not None
                else replace(part, checksum_sha256=record.part_checksums[part.part_number - 1])
                for part in parts
            ]
        await self._store.complete_multipart(upload_key, upload_id, parts)

    async def _check_size(self, record: ImageRecord, stored: StoredObject, upload_key: str) -> None:
        policy = self._policy
        if record.upload_id is not None:
            limit_name, limit = "max_multipart_bytes", policy.max_multipart_bytes
        else:
            limit_name, limit = "max_upload_bytes", policy.max_upload_bytes
        if stored.size > limit:
            await self._reject(
                record,
                upload_key,
                "file_too_large",
                "The uploaded file exceeds the maximum upload size.",
                {"size": stored.size, limit_name: limit},
            )
        if record.declared_size is not None and stored.size != record.declared_size:
            await self._reject(
                record,
                upload_key,
                "size_mismatch",
                "The uploaded file's size differs from the declared size.",
                {"size": stored.size, "declared_size": record.declared_size},
            )

    async def _verify_content(
        self, record: ImageRecord, stored: StoredObject, upload_key: str
    ) -> ImageRecord:
        """Reads the object once (the version that was sized), hashes it, and inspects it,
        in bounded memory (``spool.py``): a gigabyte upload costs its decode, which the pixel
        limits bound, not its size."""
        # The slot covers the spool too: a process holds as many upload copies on disk as it
        # runs decodes, however many completions arrive at once.
        async with self._inspections.held(record.user_id):
            async with aclosing(self._store.read(upload_key, etag=stored.etag)) as chunks:
                upload = await spool(chunks)
            with upload:
                try:
                    inspection = await asyncio.get_running_loop().run_in_executor(
                        None,
                        inspect_image,
                        upload.file,
                        record.content_type,
                        self._policy.inspection,
                    )
                except ImageRejected as rejection:
                    rejected: ImageRejected | None = rejection
                else:
                    rejected = None
        if rejected is not None:  # refused outside the slot: its writes need no decode slot
            await self._reject(
                record, upload_key, rejected.code, rejected.message, rejected.details
            )
        checksum = base64.b64encode(upload.sha256_digest).decode("ascii")
        declared = record.declared_checksum_sha256
        if declared is not None and checksum != declared:
            await self._reject(
                record,
                upload_key,
                "checksum_mismatch",
                "The uploaded bytes do not match the declared SHA-256 checksum.",
                {"declared": declared, "actual": checksum},
            )
        return replace(
            record,
            status=ImageStatus.PROCESSING,
            size=stored.size,
            width=inspection.width,
            height=inspection.height,
            sha256=upload.sha256,
            uploaded_sha256=upload.sha256,
            # The parts are one object now: nothing left to resume.
            upload_id=None,
            part_size=None,
            part_checksums=[],
            updated_at=self._clock(),
        )

    async def _reject(
        self,
        record: ImageRecord,
        upload_key: str,
        code: str,
        message: str,
        details: dict[str, Any],
    ) -> NoReturn:
        await self._discard_parts(record, upload_key)
        await self._store.delete([upload_key])
        rejected = replace(
            record, status=ImageStatus.REJECTED, rejection_reason=code, updated_at=self._clock()
        )
        if await self._repository.replace_if_status(rejected, ImageStatus.PENDING):
            await self.events.publish(events.REJECTED, rejected)
        raise UploadRejected(message, code=code, details=details)

    async def _reject_over_quota(self, record: ImageRecord, upload_key: str) -> None:
        await self._discard_parts(record, upload_key)
        await self._store.delete([upload_key])
        rejected = replace(
            record,
            status=ImageStatus.REJECTED,
            rejection_reason="quota_exceeded",
            updated_at=self._clock(),
        )
        if await self._repository.replace_if_status(rejected, ImageStatus.PENDING):
            await self.events.publish(events.REJECTED, rejected)

    async def _discard_parts(self, record: ImageRecord, upload_key: str) -> None:
        """Aborts the record's multipart upload if it is still open (its parts cost storage)."""
        if record.upload_id is not None:
            await self._store.abort_multipart(upload_key, record.upload_id)

    async def _discard_upload(self, upload_key: str) -> None:
        try:
            await self._store.delete([upload_key])
        except BackendUnavailable as exc:
            # The image is already safe under its own key; a leftover upload is only garbage.
            log.warning("could not remove upload %s: %s", upload_key, exc.reason)

    def accepts(self, content_type: str) -> bool:
        """Whether an upload may declare this content type."""
        return content_type in self._policy.allowed_content_types

    # -- reads and edits ------------------------------------------------------------------------

    async def get(
        self,
        principal: Principal,
        image_id: str,
        user_id: str | None,
        *,
        wait_seconds: float | None = None,
    ) -> ImageRecord:
        """The image; with ``wait_seconds``, once it has left pending/processing, or as it is
        when that time has passed (``watch.py``: correct across replicas)."""
        owner = self.owner_for(principal, user_id)
        record = await self._owned(owner, image_id)
        if wait_seconds is None or self._watcher is None or record.status not in IN_FLIGHT:
            return record
        settled = await self._watcher.wait(
            (owner, image_id), wait_seconds, holder=principal.user_id
        )
        return settled if settled is not None else await self._owned(owner, image_id)

    async def update(
        self,
        principal: Principal,
        image_id: str,
        user_id: str | None,
        *,
        tags: Sequence[str] | None,
        description: str | None,
    ) -> ImageRecord:
        owner = self.owner_for(principal, user_id)
        if tags is None and description is None:
            raise InvalidRequest(
                "Give tags and/or description to change.", code="nothing_to_update"
            )
        updated = await self._repository.update_details(
            owner,
            image_id,
            updated_at=self._clock(),
            tags=None if tags is None else normalize_tags(tags),
            description=description,
        )
        if updated is None:
            raise ImageNotFound(image_id)
        return updated

    async def list(
        self,
        principal: Principal,
        user_id: str | None,
        filters: ListFilter,
        *,
        limit: int,
        cursor: str | None,
    ) -> ImagePage:
        owner = self.owner_for(principal, user_id)
        if filters.start and filters.end and filters.start > filters.end:
            raise InvalidRequest(
                "start_date must not be after end_date.", code="invalid_date_range"
            )
        if filters.taken_from and filters.taken_to and filters.taken_from > filters.taken_to:
            raise InvalidRequest(
                "taken_from must not be after taken_to.", code="invalid_date_range"
            )
        after = self._cursors.decode(owner, cursor) if cursor else None  # "" is no cursor
        filters = replace(filters, tags=tuple(normalize_tags(filters.tags)))
        records, next_position = await self._repository.list_page(owner, filters, limit, after)
        next_cursor = None if next_position is None else self._cursors.encode(owner, next_position)
        return ImagePage(items=records, next_cursor=next_cursor)

    async def download(
        self,
        principal: Principal,
        image_id: str,
        user_id: str | None,
        *,
        variant: str | None = None,
        variant_format: str = "jpeg",
    ) -> PresignedDownload:
        record = await self._owned(self.owner_for(principal, user_id), image_id)
        if record.status is not ImageStatus.READY:
            raise Conflict(
                "Only a ready image can be downloaded.",
                code="image_not_ready",
                details={"status": record.status.value},
            )
        if variant is None and record.user_id != principal.user_id and self._may_locate(record):
            # An admin acting for the owner never sees where a photo was taken: not in the
            # metadata, and not in an original whose GPS the service keeps (any original but
            # a JPEG processed without IMAGE_SERVICE_KEEP_GPS). Variants carry no metadata.
            raise Forbidden(
                "This original may carry its owner's location: only its owner downloads it. "
                "Variants carry no metadata.",
                code="original_owner_only",
                details={"variants": sorted({v.name for v in record.variants})},
            )
        key, content_type, suffix = record.s3_key, record.content_type, None
        if variant is not None:
            chosen = next(
                (v for v in record.variants if v.name == variant and v.format == variant_format),
                None,
            )
            if chosen is None:
                raise ImageNotFound(image_id, variant=f"{variant}/{variant_format}")
            key, content_type, suffix = chosen.key, chosen.content_type, chosen.name
        expires_in = self._policy.download_url_expiry
        url = await self._store.presign_get(
            key,
            expires_in=expires_in,
            content_type=content_type,
            content_disposition=content_disposition(record, content_type, suffix=suffix),
        )
        return PresignedDownload(url=url, expires_at=self._clock() + timedelta(seconds=expires_in))

    def _may_locate(self, record: ImageRecord) -> bool:
        """Whether the stored original may still hold a GPS position."""
        return self._policy.keep_gps or record.content_type != "image/jpeg"

    async def delete(
        self, principal: Principal, image_id: str, user_id: str | None, *, permanent: bool = False
    ) -> None:
        """Moves the image to the trash (``trash_days`` > 0, an image with bytes), or with
        ``permanent`` (and for uploads that never became images) deletes it at once."""
        owner = self.owner_for(principal, user_id)
        record = await self._owned(owner, image_id)
        if not permanent and self._policy.trash_days > 0:
            if record.status is ImageStatus.TRASHED:
                return  # in the trash already: DELETE ?permanent=true purges it
            if record.status in TRASHABLE:
                trashed = await self._repository.trash(
                    record, trashable=TRASHABLE, now=self._clock()
                )
                if trashed is not None:
                    self.events.notify(events.TRASHED, trashed)
                    return
                record = await self._owned(owner, image_id)  # it changed: decide again
                if record.status is ImageStatus.TRASHED:
                    return
        await self._delete_now(record)

    async def restore(
        self, principal: Principal, image_id: str, user_id: str | None
    ) -> ImageRecord:
        """Takes an image out of the trash, into the status it had (processing: queued again)."""
        owner = self.owner_for(principal, user_id)
        record = await self._owned(owner, image_id)
        restored = None
        if record.status is ImageStatus.TRASHED:
            restored = await self._repository.restore(record, now=self._clock())
        if restored is None:  # not in the trash, or purged (404) or restored meanwhile
            current = await self._owned(owner, image_id)
            raise Conflict(
                "Only an image in the trash can be restored.",
                code="not_in_trash",
                details={"status": current.status.value},
            )
        if restored.status is ImageStatus.PROCESSING:
            await self._jobs.send(process_job(restored))
        self.events.notify(events.RESTORED, restored)
        return restored

    async def purge(self, record: ImageRecord) -> bool:
        """Deletes a trashed image for good, unless it left the trash meanwhile (a restore
        wins a race with a purge, or loses it whole: never half)."""
        marked = await self._repository.mark_deleting(
            record, updated_at=self._clock(), only_from=ImageStatus.TRASHED
        )
        if marked is None:
            return False
        await self.finish_delete(marked)
        return True

    async def empty_trash(self, principal: Principal, user_id: str | None) -> int:
        """Purges every image in the owner's trash; how many."""
        owner = self.owner_for(principal, user_id)
        purged = 0
        position = None
        while True:
            page, position = await self._repository.list_page(
                owner, ListFilter(status=ImageStatus.TRASHED), _TRASH_PAGE, position
            )
            for record in page:
                purged += await self.purge(record)
            if position is None:
                return purged

    async def _delete_now(self, record: ImageRecord) -> None:
        # Marked first, objects next, record last: wherever this stops, the record still names
        # the image as `deleting` (never served again), and a retried DELETE finishes the job.
        if record.status is not ImageStatus.DELETING:
            marked = await self._repository.mark_deleting(record, updated_at=self._clock())
            if marked is None:
                raise ImageNotFound(record.image_id)
            record = marked
        await self.finish_delete(record)

    async def finish_delete(self, record: ImageRecord) -> None:
        """Removes a `deleting` image's objects, then its record: by a DELETE, its retry, or
        the sweeper for a delete nobody retried."""
        await self._discard_parts(record, incoming_key(record))
        served = await self._store.keys_under(image_prefix(record.user_id, record.image_id))
        await self._store.delete([*served, incoming_key(record), quarantine_key(record)])
        deleted = await self._repository.delete(record)
        self._usage_cache.pop(record.user_id, None)
        if deleted:  # by this call: a concurrent one that got there first sends its own
            await self.events.publish(events.DELETED, record)
