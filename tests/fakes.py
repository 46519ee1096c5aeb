"""In-memory fakes of the domain's ports (image_service/domain/ports.py), for the domain's unit
tier: the image lifecycle's rules tested in milliseconds, without moto.

Each fake keeps its port's contract as the adapter on AWS keeps it, and
tests/integration/test_contracts.py holds both to the same assertions: conditional writes that
never let two writers both win, a usage counted in the same step as the image, listings newest
first whose next position exists only when another match does, reads that refuse a version
since replaced. What a fake cannot do (sign a URL S3 would accept) it makes plain: its URLs
name the fake.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import IO, Any
from urllib.parse import quote

from image_service.domain.apikeys import ApiKey, StoredKey
from image_service.domain.batch import BatchJob
from image_service.domain.cursor import CursorPosition
from image_service.domain.errors import BackendUnavailable, QuotaExceeded
from image_service.domain.models import (
    FocalPoint,
    IdempotentUpload,
    ImageRecord,
    ImageStatus,
    Keep,
    ListFilter,
    UploadedPart,
    Usage,
    edited_tags,
    format_timestamp,
)
from image_service.domain.ports import (
    FeedEntry,
    Owed,
    OwedJob,
    SignedPost,
    SignedPut,
    StoredObject,
)
from image_service.domain.shares import Share, StoredShare

FAKE_S3 = "https://fake-s3.invalid"


def _etag(data: bytes) -> str:
    return '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'


def sha256_base64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


@dataclass
class _Object:
    data: bytes
    content_type: str
    etag: str
    last_modified: datetime


@dataclass
class _Multipart:
    key: str
    content_type: str
    parts: dict[int, UploadedPart] = field(default_factory=dict)
    data: dict[int, bytes] = field(default_factory=dict)


class FakeObjects:
    """A bucket in a dict. ``put`` and ``put_part`` are what a client's PUT with a URL does."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.objects: dict[str, _Object] = {}
        self.uploads: dict[str, _Multipart] = {}
        self.signed: list[tuple[str, str]] = []  # (method, key) of every URL handed out
        self._clock = clock
        # Set to a backend name to make every call fail as an outage of it would.
        self.outage: str | None = None

    # -- what clients do with the URLs -------------------------------------------------------

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.objects[key] = _Object(data, content_type, _etag(data), self._clock())

    def put_part(self, upload_id: str, number: int, data: bytes) -> None:
        upload = self.uploads[upload_id]
        upload.data[number] = data
        upload.parts[number] = UploadedPart(number, len(data), _etag(data), sha256_base64(data))

    # -- the port ------------------------------------------------------------------------------

    def _check(self) -> None:
        if self.outage is not None:
            raise BackendUnavailable(self.outage, "fake outage")

    def _url(self, method: str, key: str, expires_in: int, query: str = "") -> str:
        self.signed.append((method, key))
        return f"{FAKE_S3}/{quote(key)}?expires={expires_in}{query}"

    async def presign_put(
        self,
        key: str,
        *,
        content_type: str,
        expires_in: int,
        size: int | None = None,
        checksum_sha256: str | None = None,
        refuse_overwrite: bool = False,
    ) -> SignedPut:
        headers = {"Content-Type": content_type}
        if size is not None:
            headers["Content-Length"] = str(size)
        if checksum_sha256 is not None:
            headers["x-amz-checksum-sha256"] = checksum_sha256
        if refuse_overwrite:
            headers["If-None-Match"] = "*"
        return SignedPut(self._url("PUT", key, expires_in), headers)

    async def presign_post(
        self,
        key: str,
        *,
        content_type: str,
        expires_in: int,
        min_size: int,
        max_size: int,
        checksum_sha256: str | None = None,
    ) -> SignedPost:
        fields = {"key": key, "Content-Type": content_type, "range": f"{min_size}-{max_size}"}
        if checksum_sha256 is not None:
            fields["x-amz-checksum-sha256"] = checksum_sha256
        self.signed.append(("POST", key))
        return SignedPost(f"{FAKE_S3}/", fields)

    async def presign_get(
        self, key: str, *, expires_in: int, content_type: str, content_disposition: str
    ) -> str:
        return self._url("GET", key, expires_in, f"&type={quote(content_type)}")

    async def create_multipart(self, key: str, *, content_type: str, checksums: bool) -> str:
        self._check()
        upload_id = uuid.uuid4().hex
        self.uploads[upload_id] = _Multipart(key, content_type)
        return upload_id

    async def presign_part(
        self,
        key: str,
        *,
        upload_id: str,
        part_number: int,
        size: int,
        checksum_sha256: str | None,
        expires_in: int,
    ) -> SignedPut:
        headers = {"Content-Length": str(size)}
        if checksum_sha256 is not None:
            headers["x-amz-checksum-sha256"] = checksum_sha256
        query = f"&partNumber={part_number}&uploadId={upload_id}"
        return SignedPut(self._url("PUT", key, expires_in, query), headers)

    async def uploaded_parts(self, key: str, upload_id: str) -> list[UploadedPart] | None:
        self._check()
        upload = self.uploads.get(upload_id)
        if upload is None or upload.key != key:
            return None
        return [upload.parts[n] for n in sorted(upload.parts)]

    async def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[UploadedPart]
    ) -> bool:
        self._check()
        upload = self.uploads.pop(upload_id, None)
        if upload is None or upload.key != key:
            return False
        self.put(key, b"".join(upload.data[part.part_number] for part in parts))
        return True

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        self._check()
        self.uploads.pop(upload_id, None)

    async def head(self, key: str) -> StoredObject | None:
        self._check()
        found = self.objects.get(key)
        if found is None:
            return None
        return StoredObject(len(found.data), found.etag, found.last_modified)

    async def read(self, key: str, *, etag: str | None = None) -> AsyncGenerator[bytes]:
        self._check()
        found = self.objects.get(key)
        if found is None:
            raise BackendUnavailable("s3", "NoSuchKey")
        if etag is not None and found.etag != etag:
            raise BackendUnavailable("s3", "PreconditionFailed")
        for start in range(0, len(found.data), 256 * 1024):
            yield found.data[start : start + 256 * 1024]
        if not found.data:
            yield b""

    async def put_bytes(self, key: str, data: bytes | IO[bytes], *, content_type: str) -> str:
        self._check()
        body = data if isinstance(data, bytes) else data.read()
        self.put(key, body, content_type)
        return self.objects[key].etag

    async def copy(self, source_key: str, target_key: str, *, etag: str, content_type: str) -> None:
        self._check()
        found = self.objects.get(source_key)
        if found is None or found.etag != etag:
            raise BackendUnavailable("s3", "PreconditionFailed")
        self.objects[target_key] = replace(found, content_type=content_type)

    async def keys_under(self, prefix: str) -> list[str]:
        self._check()
        return sorted(key for key in self.objects if key.startswith(prefix))

    async def delete(self, keys: Sequence[str]) -> None:
        self._check()
        for key in keys:
            self.objects.pop(key, None)


_Delete = object()


class FakeTable:
    """The image records, each owner's usage, the outbox and the feed, in dicts: the
    ``Records``, ``Listing``, ``Outbox`` and ``Feed`` ports as the DynamoDB repository keeps
    them."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], ImageRecord] = {}
        self.usages: dict[str, Usage] = {}
        # The outbox: each owed job with when it was owed; and the feed, in order.
        self.outbox: dict[tuple[str, str], tuple[datetime, OwedJob]] = {}
        self.feed: list[tuple[datetime, FeedEntry]] = []
        self.outage: str | None = None
        # Called with the record before each conditional write: a test's other writer.
        self.before_write: Callable[[ImageRecord], None] | None = None

    def _check(self) -> None:
        if self.outage is not None:
            raise BackendUnavailable(self.outage, "fake outage")

    # -- Records -------------------------------------------------------------------------------

    async def get(self, user_id: str, image_id: str) -> ImageRecord | None:
        self._check()
        return self.records.get((user_id, image_id))

    async def usage(self, user_id: str) -> Usage:
        self._check()
        return self.usages.get(user_id, Usage(0, 0))

    async def create(self, record: ImageRecord) -> ImageRecord:
        self._check()
        stored = replace(record, revision=1)
        self.records[(record.user_id, record.image_id)] = stored
        return stored

    async def create_if_absent(self, record: ImageRecord) -> ImageRecord | None:
        if (record.user_id, record.image_id) in self.records:
            return None
        return await self.create(record)

    def _rewrite(
        self,
        read: ImageRecord | None,
        change: Callable[[ImageRecord], Any],
        owed: Owed | None = None,
    ) -> ImageRecord | None:
        """``change`` applied to the stored image (re-read when another writer got there
        first, as the repository re-reads), stored at its next revision; None when the image
        is gone or the change leaves it alone."""
        self._check()
        if read is None:
            return None
        key = (read.user_id, read.image_id)
        if self.before_write is not None:
            hook, self.before_write = self.before_write, None
            hook(read)
        current = self.records.get(key)
        if current is None:
            return None
        wanted = change(current)
        if wanted is None:
            return None
        if wanted is _Delete:
            del self.records[key]
            self._owe(owed, current)
            return current
        stored: ImageRecord = replace(wanted, revision=current.revision + 1)
        self.records[key] = stored
        self._owe(owed, stored)
        return stored

    def _owe(self, owed: Owed | None, record: ImageRecord) -> None:
        """What the change owed, stored with it: its feed entry and its jobs."""
        if owed is None:
            return
        entry_id = f"{format_timestamp(owed.at)}#{owed.change_id}"
        if all(entry.entry_id != entry_id for _, entry in self.feed):
            self.feed.append((owed.at, FeedEntry(entry_id, owed.event_type, owed.origin, record)))
        for job in owed.jobs:
            self.outbox[(job.user_id, job.job_id)] = (owed.at, job)

    def _advance(self, record: ImageRecord, expected: ImageStatus) -> Callable[..., Any]:
        def advance(current: ImageRecord) -> ImageRecord | None:
            if current.status is not expected:
                return None
            return replace(record, tags=current.tags, description=current.description)

        return advance

    async def replace_if_status(
        self, record: ImageRecord, expected: ImageStatus, *, owed: Owed | None = None
    ) -> bool:
        return self._rewrite(record, self._advance(record, expected), owed) is not None

    async def publish_counted(
        self,
        record: ImageRecord,
        expected: ImageStatus,
        *,
        max_images: int,
        max_bytes: int,
        owed: Owed | None = None,
    ) -> bool:
        self._check()
        current = self.records.get((record.user_id, record.image_id))
        if current is None or current.status is not expected:
            return False
        size = record.counted_bytes or 0
        usage = self.usages.get(record.user_id, Usage(0, 0))
        if usage.images >= max_images or usage.bytes + size > max_bytes:
            raise QuotaExceeded(
                "This upload would exceed the owner's quota.",
                details={"max_images": max_images, "max_bytes": max_bytes},
            )
        published = self._rewrite(record, self._advance(record, expected), owed)
        if published is not None:
            self.usages[record.user_id] = Usage(usage.images + 1, usage.bytes + size)
        return published is not None

    async def update_details(
        self,
        user_id: str,
        image_id: str,
        *,
        updated_at: datetime,
        tags: list[str] | None,
        description: str | None,
        focal: FocalPoint | Keep | None = Keep.KEEP,
        owed: Owed | None = None,
        add_tags: Sequence[str] = (),
        remove_tags: Sequence[str] = (),
    ) -> ImageRecord | None:
        def edit(current: ImageRecord) -> ImageRecord:
            return replace(
                current,
                updated_at=updated_at,
                tags=edited_tags(current.tags if tags is None else tags, add_tags, remove_tags),
                description=current.description if description is None else description,
                focal=current.focal if focal is Keep.KEEP else focal,
            )

        return self._rewrite(self.records.get((user_id, image_id)), edit, owed)

    async def mark_deleting(
        self, record: ImageRecord, *, updated_at: datetime, only_from: ImageStatus | None = None
    ) -> ImageRecord | None:
        def mark(current: ImageRecord) -> ImageRecord | None:
            if only_from is not None and current.status is not only_from:
                return None
            return replace(current, status=ImageStatus.DELETING, updated_at=updated_at)

        return self._rewrite(record, mark)

    async def trash(
        self,
        record: ImageRecord,
        *,
        trashable: frozenset[ImageStatus],
        now: datetime,
        owed: Owed | None = None,
    ) -> ImageRecord | None:
        def into_trash(current: ImageRecord) -> ImageRecord | None:
            if current.status not in trashable:
                return None
            return replace(
                current,
                status=ImageStatus.TRASHED,
                trashed_from=current.status,
                trashed_at=now,
                updated_at=now,
            )

        return self._rewrite(record, into_trash, owed)

    async def restore(
        self, record: ImageRecord, *, now: datetime, owed: Owed | None = None
    ) -> ImageRecord | None:
        def out_of_trash(current: ImageRecord) -> ImageRecord | None:
            if current.status is not ImageStatus.TRASHED or current.trashed_from is None:
                return None
            return replace(
                current,
                status=current.trashed_from,
                trashed_from=None,
                trashed_at=None,
                updated_at=now,
            )

        return self._rewrite(record, out_of_trash, owed)

    async def delete(
        self, record: ImageRecord, *, unchanged_only: bool = False, owed: Owed | None = None
    ) -> bool:
        def delete(current: ImageRecord) -> object | None:
            if unchanged_only and current.revision != record.revision:
                return None
            return _Delete

        deleted = self._rewrite(record, delete, owed)
        if deleted is not None and deleted.counted_bytes is not None:
            usage = self.usages.get(deleted.user_id, Usage(0, 0))
            self.usages[deleted.user_id] = Usage(
                usage.images - 1, usage.bytes - deleted.counted_bytes
            )
        return deleted is not None

    async def images_by_digest(self, owner: str, digests: list[str]) -> dict[str, list[str]]:
        self._check()
        found: dict[str, list[str]] = {}
        for (user, image_id), record in self.records.items():
            owns = record.status in {ImageStatus.PROCESSING, ImageStatus.READY}
            if user == owner and owns and record.uploaded_sha256 in digests:
                found.setdefault(record.uploaded_sha256, []).append(image_id)
        return {digest: sorted(ids) for digest, ids in found.items()}

    async def fetching_count(self, user_id: str, *, up_to: int) -> int:
        self._check()
        fetching = [
            record
            for (user, _), record in self.records.items()
            if user == user_id and record.status is ImageStatus.FETCHING
        ]
        return min(len(fetching), up_to)

    async def open_multipart(self, user_id: str) -> list[ImageRecord]:
        self._check()
        return [
            record
            for (user, _), record in self.records.items()
            if user == user_id and record.status is ImageStatus.PENDING and record.upload_id
        ]

    # -- Listing -------------------------------------------------------------------------------

    async def list_page(
        self, user_id: str, filters: ListFilter, limit: int, after: CursorPosition | None
    ) -> tuple[list[ImageRecord], CursorPosition | None]:
        self._check()
        keyed = [
            (sort_key, record)
            for (user, _), record in self.records.items()
            if user == user_id and _matches(record, filters)
            for sort_key in [_sort_key(record, filters)]
            if sort_key is not None
        ]
        keyed.sort(key=lambda pair: pair[0], reverse=True)
        if after is not None:
            keyed = [pair for pair in keyed if pair[0] < after.sort_key]
        page = keyed[:limit]
        more = len(keyed) > limit
        position = CursorPosition(page[-1][0], page[-1][1].image_id) if more and page else None
        return [record for _, record in page], position

    # -- Outbox and feed -----------------------------------------------------------------------

    @property
    def owed(self) -> list[OwedJob]:
        """The jobs still in the outbox, oldest first."""
        return [job for _, job in sorted(self.outbox.values(), key=lambda pair: pair[0])]

    async def drop_jobs(self, jobs: Sequence[OwedJob]) -> None:
        self._check()
        for job in jobs:
            self.outbox.pop((job.user_id, job.job_id), None)

    async def owed_jobs(self, before: datetime) -> AsyncIterator[OwedJob]:
        self._check()
        for at, job in sorted(self.outbox.values(), key=lambda pair: pair[0]):
            if at < before:
                yield job

    async def feed_since(self, since: datetime) -> list[FeedEntry]:
        self._check()
        return [entry for at, entry in sorted(self.feed, key=lambda p: p[0]) if at >= since]


def _sort_key(record: ImageRecord, filters: ListFilter) -> str | None:
    if filters.status is ImageStatus.TRASHED:
        moment = record.trashed_at or record.updated_at
    elif filters.ordered_by_taken:
        if record.photo is None or record.photo.taken_at is None:
            return None
        moment = record.photo.taken_at
    else:
        moment = record.upload_time
    return f"{format_timestamp(moment)}#{record.image_id}"


def _matches(record: ImageRecord, filters: ListFilter) -> bool:
    trashed = record.status is ImageStatus.TRASHED
    if (filters.status is ImageStatus.TRASHED) != trashed:
        return False
    if filters.status is not None and record.status is not filters.status:
        return False
    if filters.tags and (
        record.status is ImageStatus.PENDING or not set(filters.tags) <= set(record.tags)
    ):
        return False
    if filters.ordered_by_taken:
        taken = record.photo.taken_at if record.photo is not None else None
        if taken is None:
            return False
        if filters.taken_from is not None and taken < filters.taken_from:
            return False
        if filters.taken_to is not None and taken > filters.taken_to:
            return False
    if filters.start is not None and record.upload_time < filters.start:
        return False
    return filters.end is None or record.upload_time <= filters.end


class FakeIdempotency:
    """Keyed answers, live until their upload URL expires."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], IdempotentUpload] = {}

    async def get(self, caller: str, key: str, now: datetime) -> IdempotentUpload | None:
        entry = self.entries.get((caller, key))
        if entry is None or int(entry.upload.expires_at.timestamp()) <= int(now.timestamp()):
            return None
        return entry

    async def put(self, caller: str, key: str, entry: IdempotentUpload, now: datetime) -> bool:
        if await self.get(caller, key, now) is not None:
            return False
        self.entries[(caller, key)] = entry
        return True


class FakeJobs:
    """The queue: what was sent, in order. ``refusing`` makes it refuse as SQS down would."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.delays: list[int] = []  # each sent job's delay, in the same order
        self.refusing = False

    async def send(self, job: dict[str, Any], *, delay_seconds: int = 0) -> None:
        if self.refusing:
            raise BackendUnavailable("sqs", "fake outage")
        self.sent.append(job)
        self.delays.append(delay_seconds)


class FakeBatchStore:
    """The bulk jobs, each owner's count of active ones, and the outbox messages they keep,
    with the table's conditions: a taken id, the active bound, the revision of a save."""

    def __init__(self) -> None:
        self.jobs: dict[tuple[str, str], BatchJob] = {}
        self.active: Counter[str] = Counter()
        self.kept: list[OwedJob] = []
        self.outage: str | None = None

    async def batch_job(self, owner: str, job_id: str) -> BatchJob | None:
        if self.outage is not None:
            raise BackendUnavailable(self.outage, "fake outage")
        return self.jobs.get((owner, job_id))

    async def create_batch_job(
        self, job: BatchJob, *, max_active: int, message: OwedJob | None
    ) -> str | None:
        if (job.owner, job.job_id) in self.jobs:
            return "exists"
        if message is not None:
            if self.active[job.owner] >= max_active:
                return "limit"
            self.active[job.owner] += 1
            self.kept.append(message)
        self.jobs[(job.owner, job.job_id)] = job
        return None

    async def save_batch_job(self, job: BatchJob, *, finished: bool) -> BatchJob | None:
        if self.outage is not None:
            raise BackendUnavailable(self.outage, "fake outage")
        current = self.jobs.get((job.owner, job.job_id))
        if current is None or current.revision != job.revision:
            return None
        stored = replace(job, revision=job.revision + 1)
        self.jobs[(job.owner, job.job_id)] = stored
        if finished and not job.inline:
            self.active[job.owner] -= 1
        return stored


class FakeApiKeyStore:
    """The API keys: each owner's, and the lookup by id, as the table keeps them."""

    def __init__(self) -> None:
        self.keys: dict[str, StoredKey] = {}
        self.lookups = 0  # reads by id: what the verifier's memory saves

    async def create_key(self, stored: StoredKey, *, max_keys: int) -> bool:
        owned = [k for k in self.keys.values() if k.key.owner == stored.key.owner]
        if len(owned) >= max_keys:
            return False
        self.keys[stored.key.key_id] = stored
        return True

    async def owner_keys(self, owner: str) -> list[ApiKey]:
        return [stored.key for stored in self.keys.values() if stored.key.owner == owner]

    async def key_by_id(self, key_id: str) -> StoredKey | None:
        self.lookups += 1
        return self.keys.get(key_id)

    async def revoke_key(self, owner: str, key_id: str) -> bool:
        stored = self.keys.get(key_id)
        if stored is None or stored.key.owner != owner:
            return False
        del self.keys[key_id]
        return True

    async def keys_used(self, uses: Sequence[tuple[str, str, datetime]]) -> None:
        for _, key_id, used in uses:
            stored = self.keys.get(key_id)
            if stored is not None:
                self.keys[key_id] = replace(stored, key=replace(stored.key, last_used_at=used))


class FakeShareStore:
    """The share links: by id, each owner's, with their views, as the table keeps them."""

    def __init__(self) -> None:
        self.shares: dict[str, StoredShare] = {}

    async def create_share(self, stored: StoredShare, *, max_shares: int) -> bool:
        owned = [s for s in self.shares.values() if s.share.owner == stored.share.owner]
        if len([s for s in owned if not s.share.revoked]) >= max_shares:
            return False
        self.shares[stored.share.share_id] = stored
        return True

    async def share_by_id(self, share_id: str) -> StoredShare | None:
        return self.shares.get(share_id)

    async def owner_shares(self, owner: str) -> list[Share]:
        return [
            s.share for s in self.shares.values() if s.share.owner == owner and not s.share.revoked
        ]

    async def revoke_share(self, owner: str, share_id: str, *, at: datetime) -> bool:
        stored = self.shares.get(share_id)
        if stored is None or stored.share.owner != owner or stored.share.revoked:
            return False
        self.shares[share_id] = replace(stored, share=replace(stored.share, revoked=True))
        return True

    async def count_view(self, share: Share, *, max_views: int) -> bool:
        stored = self.shares[share.share_id]
        if stored.share.views >= max_views:
            return False
        self.shares[share.share_id] = replace(
            stored, share=replace(stored.share, views=stored.share.views + 1)
        )
        return True

    async def add_views(self, counts: Sequence[tuple[str, str, int]]) -> None:
        for _, share_id, views in counts:
            stored = self.shares[share_id]
            self.shares[share_id] = replace(
                stored, share=replace(stored.share, views=stored.share.views + views)
            )
