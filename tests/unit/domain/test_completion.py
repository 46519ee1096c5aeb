"""Completing an upload (domain/completion.py) over the fakes: every outcome of checking what
arrived, the quota counted in the same step, races with another completion or a delete, and a
queue that refuses the job."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from image_service.domain import events
from image_service.domain.errors import (
    BackendUnavailable,
    Conflict,
    ImageNotFound,
    QuotaExceeded,
    UploadRejected,
)
from image_service.domain.layout import incoming_key
from image_service.domain.models import MIN_PART_BYTES, ImageRecord, ImageStatus, Usage
from image_service.domain.uploads import UploadRequest
from tests import images
from tests.unit.domain.conftest import World, make_world, principal, sha256_base64


async def complete(world: World, record: ImageRecord, user: str = "alice") -> ImageRecord:
    done: ImageRecord = await world.completion.complete(principal(user), record.image_id, None)
    return done


def stored(world: World, record: ImageRecord) -> ImageRecord:
    return world.table.records[(record.user_id, record.image_id)]


# -- accepted --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "make"),
    [
        ("image/jpeg", images.jpeg),
        ("image/png", images.png),
        ("image/gif", images.gif),
        ("image/webp", images.webp),
        ("image/heic", images.heic),
        ("image/avif", images.avif),
    ],
)
async def test_a_verified_upload_is_copied_counted_and_queued(
    world: World, content_type: str, make: object
) -> None:
    data = make()  # type: ignore[operator]
    record, _ = await world.upload(data, content_type=content_type)
    done = await complete(world, record)
    assert done.status is ImageStatus.PROCESSING
    assert (done.size, done.counted_bytes) == (len(data), len(data))
    assert done.width
    assert done.height
    assert world.store.objects[record.s3_key].data == data
    assert incoming_key(record) not in world.store.objects
    assert world.jobs.sent == [{"type": "process", "user_id": "alice", "image_id": record.image_id}]
    assert world.table.usages["alice"] == Usage(images=1, bytes=len(data))


async def test_the_uploaded_digest_is_recorded_for_de_duplication(world: World) -> None:
    data = images.jpeg()
    record, _ = await world.upload(data)
    done = await complete(world, record)
    assert done.uploaded_sha256 == done.sha256
    assert (
        sha256_base64(data)
        == __import__("base64").b64encode(bytes.fromhex(done.sha256 or "")).decode()
    )


async def test_a_declared_size_and_checksum_that_match_are_accepted(world: World) -> None:
    data = images.png()
    record, _ = await world.upload(
        data, content_type="image/png", size=len(data), checksum_sha256=sha256_base64(data)
    )
    assert (await complete(world, record)).status is ImageStatus.PROCESSING


# -- refused ---------------------------------------------------------------------------------


async def test_nothing_uploaded_yet_is_a_conflict_and_the_upload_stays_open(world: World) -> None:
    record, _ = await world.uploads.create_upload(
        principal(), UploadRequest(content_type="image/jpeg")
    )
    with pytest.raises(Conflict) as refused:
        await complete(world, record)
    assert refused.value.code == "upload_missing"
    assert stored(world, record).status is ImageStatus.PENDING


async def refused_with(world: World, record: ImageRecord, code: str) -> None:
    with pytest.raises(UploadRejected) as refused:
        await complete(world, record)
    assert refused.value.code == code
    after = stored(world, record)
    assert (after.status, after.rejection_reason) == (ImageStatus.REJECTED, code)
    assert incoming_key(record) not in world.store.objects
    assert record.s3_key not in world.store.objects
    heard = [(kind, image.image_id, image.rejection_reason) for kind, image in world.heard]
    assert heard == [(events.REJECTED, record.image_id, code)]
    assert world.jobs.sent == []
    assert world.table.usages.get("alice", Usage(0, 0)) == Usage(0, 0)


async def test_bytes_of_another_type_are_rejected(world: World) -> None:
    record, _ = await world.upload(images.png(), content_type="image/jpeg")
    await refused_with(world, record, "content_mismatch")


@pytest.mark.parametrize("junk", [b"", b"hello", b"<svg></svg>", b"\xff\xd8\xff" + b"\x00" * 64])
async def test_what_is_no_image_is_rejected(world: World, junk: bytes) -> None:
    record, _ = await world.upload(junk)
    with pytest.raises(UploadRejected):
        await complete(world, record)
    assert stored(world, record).status is ImageStatus.REJECTED


async def test_a_truncated_image_is_rejected(world: World) -> None:
    data = images.jpeg(256, 256)
    record, _ = await world.upload(data[: len(data) // 2])
    with pytest.raises(UploadRejected) as refused:
        await complete(world, record)
    assert refused.value.code in {"corrupt_image", "truncated_image"}


async def test_bytes_after_the_image_are_rejected(world: World) -> None:
    record, _ = await world.upload(
        images.png() + b"<script>alert(1)</script>", content_type="image/png"
    )
    await refused_with(world, record, "trailing_data")


async def test_a_size_other_than_declared_is_rejected(world: World) -> None:
    data = images.jpeg()
    record, _ = await world.upload(data, size=len(data) + 1)
    await refused_with(world, record, "size_mismatch")


async def test_bytes_other_than_the_declared_checksum_are_rejected(world: World) -> None:
    record, _ = await world.upload(images.jpeg(), checksum_sha256=sha256_base64(b"other"))
    await refused_with(world, record, "checksum_mismatch")


async def test_an_upload_past_the_largest_is_rejected() -> None:
    world = make_world(max_upload_bytes=1000)
    record, _ = await world.upload(images.noisy("jpeg", 256, 256))
    await refused_with(world, record, "file_too_large")


async def test_too_many_pixels_are_rejected() -> None:
    world = make_world(max_pixels=100)
    record, _ = await world.upload(images.jpeg(64, 48))
    await refused_with(world, record, "too_many_pixels")


async def test_too_many_frames_are_rejected() -> None:
    world = make_world(max_frames=2)
    record, _ = await world.upload(images.animated_gif(3), content_type="image/gif")
    await refused_with(world, record, "too_many_frames")


async def test_a_completed_upload_past_the_quota_is_rejected_and_its_copy_removed() -> None:
    world = make_world(max_images_per_user=1)
    record, _ = await world.upload(images.jpeg())
    world.table.usages["alice"] = Usage(images=1, bytes=0)  # another upload completed meanwhile
    with pytest.raises(QuotaExceeded):
        await complete(world, record)
    after = stored(world, record)
    assert (after.status, after.rejection_reason) == (ImageStatus.REJECTED, "quota_exceeded")
    assert record.s3_key not in world.store.objects


async def test_completing_a_rejected_upload_again_answers_the_same_refusal(world: World) -> None:
    record, _ = await world.upload(images.png(), content_type="image/jpeg")
    with pytest.raises(UploadRejected):
        await complete(world, record)
    with pytest.raises(UploadRejected) as again:
        await complete(world, record)
    assert again.value.code == "content_mismatch"


async def test_completing_one_rejected_over_quota_answers_the_quota(world: World) -> None:
    record, _ = await world.upload(images.jpeg())
    world.table.records[("alice", record.image_id)] = replace(
        stored(world, record), status=ImageStatus.REJECTED, rejection_reason="quota_exceeded"
    )
    with pytest.raises(QuotaExceeded):
        await complete(world, record)


# -- again, and in other states --------------------------------------------------------------


async def test_completing_again_while_processing_queues_one_more_job(world: World) -> None:
    record = await world.uploaded(images.jpeg())
    assert (await complete(world, record)).status is ImageStatus.PROCESSING
    assert len(world.jobs.sent) == 2
    assert world.table.usages["alice"].images == 1  # counted once


async def test_completing_a_ready_image_answers_it_as_it_is(world: World) -> None:
    record = await world.ready(images.jpeg())
    sent = len(world.jobs.sent)
    assert (await complete(world, record)).status is ImageStatus.READY
    assert len(world.jobs.sent) == sent


async def test_whatever_a_live_url_puts_after_completion_is_removed_unread(world: World) -> None:
    record = await world.ready(images.jpeg())
    world.store.put(incoming_key(record), images.png())  # the URL is still live
    await complete(world, record)
    assert incoming_key(record) not in world.store.objects
    assert stored(world, record).status is ImageStatus.READY


async def test_a_trashed_image_cannot_be_completed_again(world: World) -> None:
    record = await world.ready(images.jpeg())
    await world.trash.delete(principal(), record.image_id, None)
    with pytest.raises(Conflict) as refused:
        await complete(world, record)
    assert refused.value.code == "image_trashed"


async def test_a_deleting_image_is_as_good_as_gone(world: World) -> None:
    record, _ = await world.upload(images.jpeg())
    world.table.records[("alice", record.image_id)] = replace(
        stored(world, record), status=ImageStatus.DELETING
    )
    with pytest.raises(ImageNotFound):
        await complete(world, record)


async def test_another_owners_upload_is_not_found(world: World) -> None:
    record, _ = await world.upload(images.jpeg())
    with pytest.raises(ImageNotFound):
        await complete(world, record, user="bob")


async def test_an_admin_completes_for_the_owner(world: World) -> None:
    record, _ = await world.upload(images.jpeg())
    done = await world.completion.complete(principal("root", admin=True), record.image_id, "alice")
    assert done.status is ImageStatus.PROCESSING


# -- races and outages -----------------------------------------------------------------------


async def test_a_queue_that_refuses_the_job_is_a_503_and_completing_again_sends_it(
    world: World,
) -> None:
    record, _ = await world.upload(images.jpeg())
    world.jobs.refusing = True
    with pytest.raises(BackendUnavailable):
        await complete(world, record)
    assert stored(world, record).status is ImageStatus.PROCESSING  # safe under its own key
    world.jobs.refusing = False
    assert (await complete(world, record)).status is ImageStatus.PROCESSING
    assert len(world.jobs.sent) == 1


async def test_a_store_outage_is_a_503_and_the_upload_stays_pending(world: World) -> None:
    record, _ = await world.upload(images.jpeg())
    world.store.outage = "s3"
    with pytest.raises(BackendUnavailable):
        await complete(world, record)
    world.store.outage = None
    assert stored(world, record).status is ImageStatus.PENDING
    assert (await complete(world, record)).status is ImageStatus.PROCESSING


async def test_a_concurrent_completion_that_won_is_the_answer(world: World) -> None:
    record, _ = await world.upload(images.jpeg())

    def the_other_completion_publishes(read: ImageRecord) -> None:
        current = world.table.records[(read.user_id, read.image_id)]
        world.table.records[(read.user_id, read.image_id)] = replace(
            current, status=ImageStatus.PROCESSING, revision=current.revision + 1
        )

    world.table.before_write = the_other_completion_publishes
    done = await complete(world, record)
    assert done.status is ImageStatus.PROCESSING
    assert world.jobs.sent == []  # the winner sent its own
    assert world.table.usages.get("alice", Usage(0, 0)).images == 0  # and counted it itself


async def test_a_delete_during_completion_removes_the_copy_and_answers_404(world: World) -> None:
    record, _ = await world.upload(images.jpeg())

    def deleted_meanwhile(read: ImageRecord) -> None:
        del world.table.records[(read.user_id, read.image_id)]

    world.table.before_write = deleted_meanwhile
    with pytest.raises(ImageNotFound):
        await complete(world, record)
    assert record.s3_key not in world.store.objects
    assert incoming_key(record) not in world.store.objects


async def test_a_trash_after_another_completion_answers_image_trashed(world: World) -> None:
    record, _ = await world.upload(images.jpeg())

    def completed_then_trashed(read: ImageRecord) -> None:
        current = world.table.records[(read.user_id, read.image_id)]
        world.table.records[(read.user_id, read.image_id)] = replace(
            current, status=ImageStatus.TRASHED, trashed_from=ImageStatus.PROCESSING
        )

    world.table.before_write = completed_then_trashed
    with pytest.raises(Conflict) as refused:
        await complete(world, record)
    assert refused.value.code == "image_trashed"


# -- multipart -------------------------------------------------------------------------------


async def multipart(world: World, data: bytes, **request: object) -> tuple[ImageRecord, str]:
    record, upload = await world.uploads.create_upload(
        principal(),
        UploadRequest(
            content_type="image/png", method="MULTIPART", size=len(data),
            part_size=MIN_PART_BYTES, **request,  # type: ignore[arg-type]
        ),
    )  # fmt: skip
    assert upload is not None
    assert upload.upload_id is not None
    return record, upload.upload_id


def send_parts(world: World, upload_id: str, data: bytes, numbers: list[int]) -> None:
    for number in numbers:
        start = (number - 1) * MIN_PART_BYTES
        world.store.put_part(upload_id, number, data[start : start + MIN_PART_BYTES])


@pytest.fixture(scope="module")
def big_png() -> bytes:
    return images.noisy_png(1400, 1400)  # a little over one 5 MiB part


async def test_a_multipart_upload_is_assembled_then_verified(world: World, big_png: bytes) -> None:
    record, upload_id = await multipart(world, big_png)
    send_parts(world, upload_id, big_png, [1, 2])
    done = await complete(world, record)
    assert done.status is ImageStatus.PROCESSING
    assert (done.upload_id, done.part_size, done.part_checksums) == (None, None, [])
    assert world.store.objects[record.s3_key].data == big_png
    assert upload_id not in world.store.uploads


async def test_missing_parts_are_named_and_the_upload_stays_open(
    world: World, big_png: bytes
) -> None:
    record, upload_id = await multipart(world, big_png)
    send_parts(world, upload_id, big_png, [1])
    with pytest.raises(Conflict) as refused:
        await complete(world, record)
    assert refused.value.code == "parts_missing"
    assert refused.value.details["missing"] == [2]
    assert upload_id in world.store.uploads


async def test_a_part_of_the_wrong_length_is_rejected_and_the_parts_discarded(
    world: World, big_png: bytes
) -> None:
    record, upload_id = await multipart(world, big_png)
    send_parts(world, upload_id, big_png, [2])
    world.store.put_part(upload_id, 1, b"short")
    await refused_with(world, record, "size_mismatch")
    assert upload_id not in world.store.uploads


async def test_a_part_whose_checksum_differs_is_rejected(world: World, big_png: bytes) -> None:
    sums = [sha256_base64(b"declared"), sha256_base64(big_png[MIN_PART_BYTES:])]
    record, upload_id = await multipart(world, big_png, part_checksums=sums)
    send_parts(world, upload_id, big_png, [1, 2])
    await refused_with(world, record, "checksum_mismatch")


async def test_a_refusal_is_recorded_before_what_arrived_is_removed(world: World) -> None:
    """A concurrent completion that finds the upload gone must read the refusal, never a
    pending image whose bytes vanished (it could only answer that with a 503)."""
    record, _ = await world.upload(images.png(), content_type="image/jpeg")
    seen_when_removed: list[ImageStatus] = []
    delete = world.store.delete

    async def observed_delete(keys: Sequence[str]) -> None:
        if incoming_key(record) in keys:
            seen_when_removed.append(stored(world, record).status)
        await delete(keys)

    world.store.delete = observed_delete  # type: ignore[method-assign]
    with pytest.raises(UploadRejected):
        await complete(world, record)
    assert seen_when_removed == [ImageStatus.REJECTED]


async def test_a_refusal_whose_removal_failed_is_finished_by_completing_again(
    world: World,
) -> None:
    record, _ = await world.upload(images.png(), content_type="image/jpeg")
    delete = world.store.delete

    async def failing_delete(keys: Sequence[str]) -> None:
        raise BackendUnavailable("s3", "fake outage")

    world.store.delete = failing_delete  # type: ignore[method-assign]
    with pytest.raises(UploadRejected):  # the refusal stands, whatever became of the bytes
        await complete(world, record)
    assert stored(world, record).status is ImageStatus.REJECTED
    assert incoming_key(record) in world.store.objects
    world.store.delete = delete  # type: ignore[method-assign]
    with pytest.raises(UploadRejected) as again:
        await complete(world, record)
    assert again.value.code == "content_mismatch"
    assert incoming_key(record) not in world.store.objects
