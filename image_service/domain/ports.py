"""What the domain needs from the world outside it, and nothing more: each port is the set of
calls the domain makes, typed as a ``Protocol``. The adapters in ``storage/`` fit them without
naming them (the composition root, ``programs/services.py``, hands them over, and mypy checks the
fit there); the in-memory fakes in ``tests/fakes.py`` fit them too, and a contract test runs the
same assertions against both (``tests/integration/test_contracts.py``).

The values that cross a port (what a stored object looks like, a signed upload) live here too,
so that neither side imports the other for them.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any, Protocol

from image_service.domain.cursor import CursorPosition
from image_service.domain.models import (
    FocalPoint,
    IdempotentUpload,
    ImageRecord,
    ImageStatus,
    Keep,
    ListFilter,
    UploadedPart,
    Usage,
)

# The time the domain decides by (expiries, trash retention, timestamps): a test pins it.
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The clock the service runs on."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class StoredObject:
    size: int
    etag: str
    last_modified: datetime


@dataclass(frozen=True, slots=True)
class SignedPut:
    url: str
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class SignedPost:
    url: str
    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class OwedJob:
    """A job a change owes (a webhook delivery), kept beside its owner's images under
    ``job_id`` until the queue has taken it."""

    user_id: str
    job_id: str
    job: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Owed:
    """What a change owes once it is stored: the event every replica's streams hear, and the
    jobs to queue. The records write both in the change's own transaction (the outbox), so a
    process that dies after the commit loses neither: the relay sends what it never did."""

    change_id: str  # the same on every attempt at the change: its writes are idempotent
    event_type: str
    at: datetime  # when the change was made: the relay waits a grace after it
    origin: str  # the process that made it: it has told its own listeners already
    jobs: tuple[OwedJob, ...] = ()


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """A change as the outbox recorded it for every replica's streams: the image as the
    change left it (as deleted, for a delete)."""

    entry_id: str
    event_type: str
    origin: str
    record: ImageRecord


@dataclass(frozen=True, slots=True)
class WorkerBeat:
    """A worker's last heartbeat: what it processes as, from where, and when it said so."""

    worker_id: str
    fingerprint: str
    host: str
    seen_at: datetime


class Objects(Protocol):
    """The bucket: URLs that send clients' bytes straight to it, and the reads, copies and
    deletes that completion and deletion make."""

    async def presign_put(
        self,
        key: str,
        *,
        content_type: str,
        expires_in: int,
        size: int | None = None,
        checksum_sha256: str | None = None,
        refuse_overwrite: bool = False,
    ) -> SignedPut: ...

    async def presign_post(
        self,
        key: str,
        *,
        content_type: str,
        expires_in: int,
        min_size: int,
        max_size: int,
        checksum_sha256: str | None = None,
    ) -> SignedPost: ...

    async def presign_get(
        self, key: str, *, expires_in: int, content_type: str, content_disposition: str
    ) -> str: ...

    async def create_multipart(self, key: str, *, content_type: str, checksums: bool) -> str: ...

    async def presign_part(
        self,
        key: str,
        *,
        upload_id: str,
        part_number: int,
        size: int,
        checksum_sha256: str | None,
        expires_in: int,
    ) -> SignedPut: ...

    async def uploaded_parts(self, key: str, upload_id: str) -> list[UploadedPart] | None:
        """The parts held, by number; None once the upload is completed or aborted."""
        ...

    async def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[UploadedPart]
    ) -> bool:
        """False when the upload is no longer open (another completion, or an abort)."""
        ...

    async def abort_multipart(self, key: str, upload_id: str) -> None: ...

    async def head(self, key: str) -> StoredObject | None: ...

    def read(self, key: str, *, etag: str | None = None) -> AsyncGenerator[bytes]:
        """The bytes in chunks; with ``etag``, failing if the object changed since."""
        ...

    async def copy(
        self, source_key: str, target_key: str, *, etag: str, content_type: str
    ) -> None: ...

    async def keys_under(self, prefix: str) -> list[str]: ...

    async def put_bytes(self, key: str, data: bytes | IO[bytes], *, content_type: str) -> str:
        """Stores ``data`` (a seekable file read from its start) at ``key``; its ETag."""
        ...

    async def delete(self, keys: Sequence[str]) -> None:
        """Absent keys are no error: a retried delete finishes."""
        ...


class Records(Protocol):
    """The image records and each owner's usage. Every write is conditional on what the caller
    read (the record's revision or status), so two writers never both win."""

    async def get(self, user_id: str, image_id: str) -> ImageRecord | None: ...

    async def usage(self, user_id: str) -> Usage: ...

    async def create(self, record: ImageRecord) -> ImageRecord: ...

    async def replace_if_status(
        self, record: ImageRecord, expected: ImageStatus, *, owed: Owed | None = None
    ) -> bool:
        """``owed``: written in the same transaction as the change (see ``Owed``)."""
        ...

    async def publish_counted(
        self,
        record: ImageRecord,
        expected: ImageStatus,
        *,
        max_images: int,
        max_bytes: int,
        owed: Owed | None = None,
    ) -> bool:
        """Stores ``record`` and counts it in its owner's usage, both or neither; False when
        the record is no longer ``expected`` or the usage would pass a limit."""
        ...

    async def create_if_absent(self, record: ImageRecord) -> ImageRecord | None:
        """Stores a new image unless its id is taken: the image as stored, or None."""
        ...

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
    ) -> ImageRecord | None: ...

    async def mark_deleting(
        self, record: ImageRecord, *, updated_at: datetime, only_from: ImageStatus | None = None
    ) -> ImageRecord | None: ...

    async def trash(
        self,
        record: ImageRecord,
        *,
        trashable: frozenset[ImageStatus],
        now: datetime,
        owed: Owed | None = None,
    ) -> ImageRecord | None: ...

    async def restore(
        self, record: ImageRecord, *, now: datetime, owed: Owed | None = None
    ) -> ImageRecord | None: ...

    async def delete(
        self, record: ImageRecord, *, unchanged_only: bool = False, owed: Owed | None = None
    ) -> bool: ...

    async def images_by_digest(self, owner: str, digests: list[str]) -> dict[str, list[str]]:
        """For each digest asked about, the owner's images with those bytes."""
        ...

    async def open_multipart(self, user_id: str) -> list[ImageRecord]: ...

    async def fetching_count(self, user_id: str, *, up_to: int) -> int:
        """How many of the owner's imports are being fetched, counted up to ``up_to``."""
        ...


class Listing(Protocol):
    """One owner's images, a page at a time, newest first, under a filter."""

    async def list_page(
        self, user_id: str, filters: ListFilter, limit: int, after: CursorPosition | None
    ) -> tuple[list[ImageRecord], CursorPosition | None]: ...


class IdempotencyKeys(Protocol):
    """The answers to keyed upload requests, for replays."""

    async def get(self, caller: str, key: str, now: datetime) -> IdempotentUpload | None: ...

    async def put(self, caller: str, key: str, entry: IdempotentUpload, now: datetime) -> bool:
        """False if a live answer exists already (a twin request won)."""
        ...


class Jobs(Protocol):
    """The processing queue."""

    async def send(self, job: dict[str, Any], *, delay_seconds: int = 0) -> None: ...


class Outbox(Protocol):
    """The jobs changes owe, written with them (``Owed``), and dropped once the queue has
    them; what is never dropped, the relay sends."""

    async def drop_jobs(self, jobs: Sequence[OwedJob]) -> None: ...


class Feed(Protocol):
    """Every replica's changes, as the outbox recorded them, for event streams."""

    async def feed_since(self, since: datetime) -> list[FeedEntry]:
        """The entries recorded at ``since`` or later (eventually: an index lags a little)."""
        ...


class WorkerRegistry(Protocol):
    """The workers' heartbeats: which processing settings the live workers run."""

    async def beat(self, worker_id: str, fingerprint: str, *, at: datetime) -> None: ...

    async def forget_worker(self, worker_id: str) -> None: ...

    async def workers_seen_since(self, since: datetime) -> list[WorkerBeat]: ...
