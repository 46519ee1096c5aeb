"""Creating uploads: the checks a request passes (type, size, parts, quota, rate, callback), its
pending record, and the presigned URLs that send the bytes straight to S3; idempotent replays,
the digests an owner already has, and resuming a multipart upload."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta

from image_service.domain.callbacks import url_refusal
from image_service.domain.errors import (
    Conflict,
    InvalidRequest,
)
from image_service.domain.events import ImageEvents
from image_service.domain.layout import (
    incoming_key,
    original_key,
)
from image_service.domain.models import (
    MAX_PART_BYTES,
    MIN_PART_BYTES,
    IdempotentUpload,
    ImageRecord,
    ImageStatus,
    MultipartProgress,
    OwnedDigest,
    PartUpload,
    PresignedUpload,
    Principal,
    normalize_tags,
)
from image_service.domain.owners import owned, owner_for
from image_service.domain.policy import UploadPolicy
from image_service.domain.ports import (
    Clock,
    IdempotencyKeys,
    Objects,
    Records,
    utc_now,
)
from image_service.domain.quota import Quota
from image_service.domain.ratelimit import TokenBucketLimiter

# S3 takes up to 10,000 parts; the service takes 1,000, so that a record with every part's
# checksum stays a few tens of KiB.
MAX_PARTS = 1000
# Digests one check may ask about.
MAX_CHECKED_DIGESTS = 500

_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def check_idempotency_key(key: str) -> None:
    """Refuses an ``Idempotency-Key`` that is not 1-255 printable ASCII characters."""
    if not _IDEMPOTENCY_KEY.match(key):
        raise InvalidRequest(
            "Idempotency-Key must be 1-255 printable ASCII characters.",
            code="invalid_idempotency_key",
        )


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


class Uploads:
    def __init__(
        self,
        *,
        store: Objects,
        repository: Records,
        idempotency: IdempotencyKeys,
        policy: UploadPolicy,
        quota: Quota,
        upload_limiter: TokenBucketLimiter,
        events: ImageEvents,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._repository = repository
        self._idempotency = idempotency
        self._policy = policy
        self._quota = quota
        self._upload_limiter = upload_limiter
        self._events = events
        self._clock = clock

    async def create_upload(
        self, principal: Principal, request: UploadRequest, *, idempotency_key: str | None = None
    ) -> tuple[ImageRecord, PresignedUpload | None]:
        """A new pending image and its upload URL. With an idempotency key, a retry of the same
        request (until its URL expires) answers the same image and URL instead of a new one.
        With ``if_exists="return"``, an image the owner already has of the same bytes is the
        answer, with no URL (None)."""
        owner = owner_for(principal, request.user_id)
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
        check_idempotency_key(idempotency_key)
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
        record = await owned(self._repository, stored.owner, stored.image_id)
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
        owner = owner_for(principal, user_id)
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
        await self._quota.check(owner, request.size or 0)
        if multipart:
            await self._quota.check_open_multipart(owner, request.size or 0)
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
        if not self._events.signing:
            raise InvalidRequest(
                "This service sends no webhooks (IMAGE_SERVICE_WEBHOOK_SECRET is unset).",
                code="webhooks_not_configured",
            )
        refusal = await url_refusal(url, allow_private=self._policy.callbacks_to_private)
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
        record = await owned(self._repository, owner_for(principal, user_id), image_id)
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
