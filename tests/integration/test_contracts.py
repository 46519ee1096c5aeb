"""The ports' contracts, held against both sides: every assertion here runs on the in-memory
fakes the domain's unit tier uses (tests/fakes.py) and on the adapters the service runs on
(storage/, against moto). A fake that drifts from its adapter fails here, not in production."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from image_service.domain.errors import BackendUnavailable, QuotaExceeded
from image_service.domain.models import (
    IdempotentUpload,
    ImageRecord,
    ImageStatus,
    ListFilter,
    PresignedUpload,
    Usage,
)
from image_service.domain.ports import (
    Feed,
    IdempotencyKeys,
    Jobs,
    Listing,
    Objects,
    Outbox,
    Owed,
    OwedJob,
    Records,
)
from image_service.domain.trash import TRASHABLE
from image_service.programs.services import open_services
from image_service.settings import Settings
from image_service.storage.clients import provision
from image_service.storage.dynamo import IdempotencyStore
from tests.fakes import FakeIdempotency, FakeJobs, FakeObjects, FakeTable
from tests.integration.conftest import JWT_SECRET

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@dataclass
class Ports:
    store: Objects
    records: Records
    listing: Listing
    idempotency: IdempotencyKeys
    jobs: Jobs
    outbox: Outbox
    feed: Feed
    put: Callable[[str, bytes], Any]  # what a client's PUT with a URL does
    # What each side holds, read its own way: the queue's messages, the outbox's jobs.
    queued: Callable[[], Awaitable[list[dict[str, Any]]]]
    owed: Callable[[], Awaitable[list[OwedJob]]]


@pytest.fixture(params=["fake", "adapter"])
async def ports(request: pytest.FixtureRequest) -> AsyncIterator[Ports]:
    if request.param == "fake":
        store, table = FakeObjects(), FakeTable()

        jobs = FakeJobs()

        async def put_fake(key: str, data: bytes) -> None:
            store.put(key, data)

        async def queued_fake() -> list[dict[str, Any]]:
            return list(jobs.sent)

        async def owed_fake() -> list[OwedJob]:
            return [job async for job in table.owed_jobs(datetime.now(UTC) + timedelta(days=1))]

        yield Ports(
            store,
            table,
            table,
            FakeIdempotency(),
            jobs,
            table,
            table,
            put_fake,
            queued_fake,
            owed_fake,
        )
        return
    request.getfixturevalue("moto_endpoint")  # the suite's moto, through AWS_ENDPOINT_URL
    suffix = uuid.uuid4().hex[:12]
    settings = Settings(
        jwt_secret=JWT_SECRET,
        bucket=f"contracts-{suffix}",
        table=f"contracts-{suffix}",
        queue_name=f"contracts-{suffix}",
        s3_event_notifications=False,  # S3's test event would be the queue's first message
    )
    await provision(settings)
    async with open_services(settings) as services:

        async def put_real(key: str, data: bytes) -> None:
            await services.store.put_bytes(key, data, content_type="application/octet-stream")

        idempotency = IdempotencyStore(services.clients.table, settings.table)

        async def queued_real() -> list[dict[str, Any]]:
            messages = await services.jobs.receive(
                max_messages=10, wait_seconds=1, visibility_timeout=30
            )
            return [json.loads(message.body) for message in messages]

        async def owed_real() -> list[OwedJob]:
            later = datetime.now(UTC) + timedelta(days=1)
            return [job async for job in services.repository.owed_jobs(later)]

        yield Ports(
            services.store,
            services.repository,
            services.repository,
            idempotency,
            services.jobs,
            services.repository,
            services.repository,
            put_real,
            queued_real,
            owed_real,
        )


def image(user: str = "alice", *, minutes: int = 0, **fields: Any) -> ImageRecord:
    image_id = fields.pop("image_id", str(uuid.uuid4()))
    moment = NOW + timedelta(minutes=minutes)
    return ImageRecord(
        user_id=user,
        image_id=image_id,
        s3_key=f"images/{user}/{image_id}/original",
        content_type="image/jpeg",
        status=fields.pop("status", ImageStatus.READY),
        upload_time=moment,
        updated_at=moment,
        **fields,
    )


# -- Records ---------------------------------------------------------------------------------


async def test_a_created_record_reads_back_at_its_first_revision(ports: Ports) -> None:
    record = image(tags=["a", "b"], description="d", status=ImageStatus.PENDING)
    stored = await ports.records.create(record)
    assert stored == replace(record, revision=1)
    assert await ports.records.get("alice", record.image_id) == stored
    assert await ports.records.get("bob", record.image_id) is None


async def test_a_replace_from_the_status_read_wins_once(ports: Ports) -> None:
    stored = await ports.records.create(image(status=ImageStatus.PENDING))
    processing = replace(stored, status=ImageStatus.PROCESSING)
    assert await ports.records.replace_if_status(processing, ImageStatus.PENDING)
    assert not await ports.records.replace_if_status(processing, ImageStatus.PENDING)
    after = await ports.records.get("alice", stored.image_id)
    assert after is not None
    assert (after.status, after.revision) == (ImageStatus.PROCESSING, 2)


async def test_a_replace_keeps_an_edit_made_since_the_read(ports: Ports) -> None:
    stored = await ports.records.create(image(status=ImageStatus.PENDING, tags=["old"]))
    await ports.records.update_details(
        "alice", stored.image_id, updated_at=NOW, tags=["edited"], description="mine"
    )
    assert await ports.records.replace_if_status(
        replace(stored, status=ImageStatus.PROCESSING), ImageStatus.PENDING
    )
    after = await ports.records.get("alice", stored.image_id)
    assert after is not None
    assert (after.tags, after.description) == (["edited"], "mine")


async def test_publishing_counts_the_image_in_its_owners_usage(ports: Ports) -> None:
    stored = await ports.records.create(image(status=ImageStatus.PENDING))
    published = replace(stored, status=ImageStatus.PROCESSING, counted_bytes=100)
    assert await ports.records.publish_counted(
        published, ImageStatus.PENDING, max_images=10, max_bytes=1000
    )
    assert await ports.records.usage("alice") == Usage(images=1, bytes=100)
    assert await ports.records.usage("bob") == Usage(images=0, bytes=0)


@pytest.mark.parametrize(("max_images", "max_bytes"), [(1, 1000), (10, 150)])
async def test_publishing_past_the_quota_is_refused_and_counts_nothing(
    ports: Ports, max_images: int, max_bytes: int
) -> None:
    first = await ports.records.create(image(status=ImageStatus.PENDING))
    await ports.records.publish_counted(
        replace(first, status=ImageStatus.PROCESSING, counted_bytes=100),
        ImageStatus.PENDING,
        max_images=10,
        max_bytes=1000,
    )
    second = await ports.records.create(image(status=ImageStatus.PENDING))
    with pytest.raises(QuotaExceeded):
        await ports.records.publish_counted(
            replace(second, status=ImageStatus.PROCESSING, counted_bytes=100),
            ImageStatus.PENDING,
            max_images=max_images,
            max_bytes=max_bytes,
        )
    assert await ports.records.usage("alice") == Usage(images=1, bytes=100)
    still = await ports.records.get("alice", second.image_id)
    assert still is not None
    assert still.status is ImageStatus.PENDING


async def test_a_deleted_counted_image_gives_its_usage_back(ports: Ports) -> None:
    stored = await ports.records.create(image(status=ImageStatus.PENDING))
    await ports.records.publish_counted(
        replace(stored, status=ImageStatus.PROCESSING, counted_bytes=70),
        ImageStatus.PENDING,
        max_images=10,
        max_bytes=1000,
    )
    current = await ports.records.get("alice", stored.image_id)
    assert current is not None
    assert await ports.records.delete(current)
    assert await ports.records.get("alice", stored.image_id) is None
    assert await ports.records.usage("alice") == Usage(0, 0)
    assert not await ports.records.delete(current)  # already gone


async def test_an_unchanged_only_delete_refuses_a_stale_view(ports: Ports) -> None:
    stored = await ports.records.create(image())
    await ports.records.update_details(
        "alice", stored.image_id, updated_at=NOW, tags=["x"], description=None
    )
    assert not await ports.records.delete(stored, unchanged_only=True)
    assert await ports.records.get("alice", stored.image_id) is not None


async def test_trash_and_restore_give_back_the_status_it_had(ports: Ports) -> None:
    stored = await ports.records.create(image(status=ImageStatus.QUARANTINED))
    trashed = await ports.records.trash(stored, trashable=TRASHABLE, now=NOW)
    assert trashed is not None
    assert (trashed.status, trashed.trashed_from, trashed.trashed_at) == (
        ImageStatus.TRASHED,
        ImageStatus.QUARANTINED,
        NOW,
    )
    assert await ports.records.trash(trashed, trashable=TRASHABLE, now=NOW) is None
    restored = await ports.records.restore(trashed, now=NOW)
    assert restored is not None
    assert (restored.status, restored.trashed_from) == (ImageStatus.QUARANTINED, None)
    assert await ports.records.restore(restored, now=NOW) is None


async def test_a_pending_image_is_not_trashable(ports: Ports) -> None:
    stored = await ports.records.create(image(status=ImageStatus.PENDING))
    assert await ports.records.trash(stored, trashable=TRASHABLE, now=NOW) is None


async def test_marking_deleting_only_from_a_status_loses_to_a_change(ports: Ports) -> None:
    stored = await ports.records.create(image())
    trashed = await ports.records.trash(stored, trashable=TRASHABLE, now=NOW)
    assert trashed is not None
    await ports.records.restore(trashed, now=NOW)
    assert (
        await ports.records.mark_deleting(trashed, updated_at=NOW, only_from=ImageStatus.TRASHED)
        is None
    )
    marked = await ports.records.mark_deleting(trashed, updated_at=NOW)
    assert marked is not None
    assert marked.status is ImageStatus.DELETING


async def test_editing_a_missing_image_answers_none(ports: Ports) -> None:
    assert (
        await ports.records.update_details(
            "alice", "missing", updated_at=NOW, tags=["a"], description=None
        )
        is None
    )


async def published(ports: Ports, user: str, **fields: Any) -> ImageRecord:
    """An image as completion leaves it: created pending, then published with its digest."""
    stored = await ports.records.create(image(user, status=ImageStatus.PENDING))
    record = replace(stored, status=ImageStatus.PROCESSING, counted_bytes=1, **fields)
    assert await ports.records.publish_counted(
        record, ImageStatus.PENDING, max_images=10, max_bytes=10
    )
    return record


async def test_digests_name_the_owners_images_once_published(ports: Ports) -> None:
    digest, other = "a" * 64, "b" * 64
    owned = await published(ports, "alice", uploaded_sha256=digest, sha256=digest)
    await ports.records.create(image(status=ImageStatus.PENDING))
    await published(ports, "bob", uploaded_sha256=digest, sha256=digest)
    found = await ports.records.images_by_digest("alice", [digest, other])
    assert found == {digest: [owned.image_id]}
    current = await ports.records.get("alice", owned.image_id)
    assert current is not None
    await ports.records.trash(current, trashable=TRASHABLE, now=NOW)
    assert await ports.records.images_by_digest("alice", [digest]) == {}


async def test_open_multipart_lists_pending_uploads_in_parts_only(ports: Ports) -> None:
    parts = await ports.records.create(
        image(status=ImageStatus.PENDING, upload_id="u-1", part_size=5 * 2**20)
    )
    await ports.records.create(image(status=ImageStatus.PENDING))
    await ports.records.create(image("bob", status=ImageStatus.PENDING, upload_id="u-2"))
    assert [r.image_id for r in await ports.records.open_multipart("alice")] == [parts.image_id]


# -- Listing ---------------------------------------------------------------------------------


async def every_page(
    ports: Ports, filters: ListFilter, limit: int, user: str = "alice"
) -> list[list[str]]:
    pages: list[list[str]] = []
    after = None
    while True:
        page, after = await ports.listing.list_page(user, filters, limit, after)
        pages.append([record.image_id for record in page])
        if after is None:
            return pages


async def test_pages_are_newest_first_and_a_next_position_means_more(ports: Ports) -> None:
    ids = [(await ports.records.create(image(minutes=n))).image_id for n in range(5)]
    await ports.records.create(image("bob", minutes=10))
    assert await every_page(ports, ListFilter(), 2) == [ids[4:2:-1], ids[2:0:-1], [ids[0]]]
    assert await every_page(ports, ListFilter(), 5) == [ids[::-1]]


async def test_the_listing_filters_by_tags_status_and_dates(ports: Ports) -> None:
    sea = await ports.records.create(image(minutes=1, tags=["sea", "sun"]))
    await ports.records.create(image(minutes=2, tags=["sea"]))
    pending = await ports.records.create(image(minutes=3, status=ImageStatus.PENDING, tags=["sea"]))
    assert await every_page(ports, ListFilter(tags=("sea", "sun")), 10) == [[sea.image_id]]
    assert await every_page(ports, ListFilter(status=ImageStatus.PENDING), 10) == [
        [pending.image_id]
    ]
    window = ListFilter(start=NOW + timedelta(minutes=1), end=NOW + timedelta(minutes=1))
    assert await every_page(ports, window, 10) == [[sea.image_id]]


async def test_the_trash_is_listed_apart_newest_trashed_first(ports: Ports) -> None:
    kept = await ports.records.create(image(minutes=0))
    first = await ports.records.create(image(minutes=1))
    second = await ports.records.create(image(minutes=2))
    await ports.records.trash(second, trashable=TRASHABLE, now=NOW + timedelta(hours=1))
    await ports.records.trash(first, trashable=TRASHABLE, now=NOW + timedelta(hours=2))
    trash = ListFilter(status=ImageStatus.TRASHED)
    assert await every_page(ports, trash, 1) == [[first.image_id], [second.image_id]]
    assert await every_page(ports, ListFilter(), 10) == [[kept.image_id]]


# -- IdempotencyKeys -------------------------------------------------------------------------


def answer(image_id: str, expires_at: datetime) -> IdempotentUpload:
    upload = PresignedUpload(
        "https://s3/url", "PUT", {"Content-Type": "image/jpeg"}, {}, expires_at
    )
    return IdempotentUpload("fingerprint", "alice", image_id, upload)


async def test_a_keyed_answer_lives_until_its_url_expires(ports: Ports) -> None:
    entry = answer("img-1", NOW + timedelta(minutes=5))
    assert await ports.idempotency.put("alice", "key", entry, NOW)
    assert await ports.idempotency.get("alice", "key", NOW) == entry
    assert await ports.idempotency.get("bob", "key", NOW) is None
    assert await ports.idempotency.get("alice", "key", NOW + timedelta(minutes=5)) is None


async def test_a_twin_cannot_replace_a_live_answer_but_may_an_expired_one(ports: Ports) -> None:
    first = answer("img-1", NOW + timedelta(minutes=5))
    assert await ports.idempotency.put("alice", "key", first, NOW)
    assert not await ports.idempotency.put("alice", "key", answer("img-2", NOW + timedelta(1)), NOW)
    later = NOW + timedelta(minutes=6)
    assert await ports.idempotency.put("alice", "key", answer("img-3", later + timedelta(1)), later)


# -- Objects ---------------------------------------------------------------------------------


async def read_all(store: Objects, key: str, etag: str | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.read(key, etag=etag)])


async def test_an_object_is_headed_read_copied_and_deleted(ports: Ports) -> None:
    await ports.put("incoming/alice/1", b"bytes of an image")
    head = await ports.store.head("incoming/alice/1")
    assert head is not None
    assert head.size == len(b"bytes of an image")
    assert await read_all(ports.store, "incoming/alice/1", head.etag) == b"bytes of an image"
    await ports.store.copy(
        "incoming/alice/1", "images/alice/1/original", etag=head.etag, content_type="image/jpeg"
    )
    assert await ports.store.keys_under("images/alice/1/") == ["images/alice/1/original"]
    await ports.store.delete(["incoming/alice/1", "images/alice/1/original", "never/there"])
    assert await ports.store.head("incoming/alice/1") is None
    assert await ports.store.keys_under("images/alice/") == []


async def test_a_read_of_a_version_since_replaced_fails(ports: Ports) -> None:
    # The copy's own condition (CopySourceIfMatch) is S3's too, but moto does not check it:
    # tests/integration/test_s3_signatures.py runs completion against LocalStack, which does.
    await ports.put("incoming/alice/2", b"first")
    head = await ports.store.head("incoming/alice/2")
    assert head is not None
    await ports.put("incoming/alice/2", b"second, longer")
    with pytest.raises(BackendUnavailable):
        await read_all(ports.store, "incoming/alice/2", head.etag)


async def test_a_multipart_upload_is_open_until_aborted(ports: Ports) -> None:
    upload_id = await ports.store.create_multipart(
        "incoming/alice/3", content_type="image/png", checksums=True
    )
    assert await ports.store.uploaded_parts("incoming/alice/3", upload_id) == []
    await ports.store.abort_multipart("incoming/alice/3", upload_id)
    assert await ports.store.uploaded_parts("incoming/alice/3", upload_id) is None
    await ports.store.abort_multipart("incoming/alice/3", upload_id)  # again: already gone


async def test_signed_urls_name_their_key_and_headers(ports: Ports) -> None:
    put = await ports.store.presign_put(
        "incoming/alice/4", content_type="image/png", expires_in=60, size=10,
        refuse_overwrite=True,
    )  # fmt: skip
    assert put.headers == {
        "Content-Type": "image/png",
        "Content-Length": "10",
        "If-None-Match": "*",
    }
    assert "incoming/alice/4" in put.url
    part = await ports.store.presign_part(
        "incoming/alice/4", upload_id="up", part_number=2, size=7, checksum_sha256=None,
        expires_in=60,
    )  # fmt: skip
    assert part.headers == {"Content-Length": "7"}
    assert "partNumber=2" in part.url
    assert "uploadId=up" in part.url


# -- Jobs and the Outbox ---------------------------------------------------------------------


async def test_a_sent_job_is_queued_as_sent(ports: Ports) -> None:
    job = {"type": "process", "user_id": "alice", "image_id": "img-1"}
    await ports.jobs.send(job)
    assert await ports.queued() == [job]


def _owed(event_type: str, *jobs: OwedJob, at: datetime = NOW) -> Owed:
    return Owed(uuid.uuid4().hex, event_type, at, "origin-1", jobs)


async def test_a_change_stores_what_it_owes_with_it(ports: Ports) -> None:
    record = await ports.records.create(image(status=ImageStatus.PROCESSING))
    job = OwedJob("alice", "change.operator", {"type": "webhook", "id": "msg_1", "n": [1]})
    owed = _owed("image.ready", job)
    ready = replace(record, status=ImageStatus.READY)
    assert await ports.records.replace_if_status(ready, ImageStatus.PROCESSING, owed=owed)
    assert await ports.owed() == [job]
    [entry] = await ports.feed.feed_since(NOW)
    assert (entry.event_type, entry.origin) == ("image.ready", "origin-1")
    assert (entry.record.status, entry.record.revision) == (ImageStatus.READY, 2)
    await ports.outbox.drop_jobs([job])
    assert await ports.owed() == []
    await ports.outbox.drop_jobs([job])  # again: gone already is no error


async def test_a_change_refused_owes_nothing(ports: Ports) -> None:
    record = await ports.records.create(image(status=ImageStatus.PROCESSING))
    ready = replace(record, status=ImageStatus.READY)
    assert await ports.records.replace_if_status(ready, ImageStatus.PROCESSING)
    job = OwedJob("alice", "refused.operator", {"type": "webhook", "id": "msg_2"})
    owed = _owed("image.ready", job)
    # A second writer, as it read the image (processing): the image has moved on.
    assert not await ports.records.replace_if_status(ready, ImageStatus.PROCESSING, owed=owed)
    assert await ports.owed() == []
    assert await ports.feed.feed_since(NOW - timedelta(days=1)) == []


async def test_the_feed_holds_each_change_as_it_left_the_image_in_order(ports: Ports) -> None:
    record = await ports.records.create(image(status=ImageStatus.READY))
    trashed = await ports.records.trash(
        record,
        trashable=TRASHABLE,
        now=NOW,
        owed=_owed("image.trashed", at=NOW + timedelta(seconds=1)),
    )
    assert trashed is not None
    restored = await ports.records.restore(
        trashed, now=NOW, owed=_owed("image.restored", at=NOW + timedelta(seconds=2))
    )
    assert restored is not None
    assert await ports.records.delete(
        restored, owed=_owed("image.deleted", at=NOW + timedelta(seconds=3))
    )
    entries = await ports.feed.feed_since(NOW + timedelta(seconds=1))
    assert [(e.event_type, e.record.status) for e in entries] == [
        ("image.trashed", ImageStatus.TRASHED),
        ("image.restored", ImageStatus.READY),
        ("image.deleted", ImageStatus.READY),  # the image as it was deleted
    ]
    later = await ports.feed.feed_since(NOW + timedelta(seconds=2))
    assert [e.event_type for e in later] == ["image.restored", "image.deleted"]
    assert len({e.entry_id for e in entries}) == 3
