"""Deleting (domain/trash.py) over the fakes: to the trash and back, purges that lose to a
restore, deletes that finish wherever they stopped, and the usage given back."""

from __future__ import annotations

from dataclasses import replace

import pytest

from image_service.domain import events
from image_service.domain.errors import Conflict, ImageNotFound
from image_service.domain.layout import image_prefix, incoming_key
from image_service.domain.models import ImageRecord, ImageStatus, ListFilter, Usage
from image_service.domain.uploads import UploadRequest
from tests import images
from tests.unit.domain.conftest import World, make_world, principal


def stored(world: World, record: ImageRecord) -> ImageRecord | None:
    return world.table.records.get((record.user_id, record.image_id))


def heard(world: World) -> list[tuple[str, str]]:
    return [(kind, record.image_id) for kind, record in world.heard]


def ready_record(world: World, image_id: str) -> ImageRecord:
    return ImageRecord(
        user_id="alice",
        image_id=image_id,
        s3_key=f"images/alice/{image_id}/original",
        content_type="image/gif",
        status=ImageStatus.READY,
        upload_time=world.clock(),
        updated_at=world.clock(),
    )


async def test_a_delete_moves_a_ready_image_to_the_trash(world: World) -> None:
    record = await world.ready(images.jpeg())
    await world.trash.delete(principal(), record.image_id, None)
    trashed = stored(world, record)
    assert trashed is not None
    assert (trashed.status, trashed.trashed_from) == (ImageStatus.TRASHED, ImageStatus.READY)
    assert trashed.trashed_at == world.clock()
    assert record.s3_key in world.store.objects  # the bytes stay until it is purged
    assert (events.TRASHED, record.image_id) in heard(world)


@pytest.mark.parametrize("status", [ImageStatus.PROCESSING, ImageStatus.QUARANTINED])
async def test_an_image_with_bytes_in_any_state_goes_to_the_trash(
    world: World, status: ImageStatus
) -> None:
    record = await world.uploaded(images.jpeg())
    key = (record.user_id, record.image_id)
    world.table.records[key] = replace(world.table.records[key], status=status)
    await world.trash.delete(principal(), record.image_id, None)
    assert stored(world, record).trashed_from is status  # type: ignore[union-attr]


async def test_deleting_what_is_in_the_trash_already_changes_nothing(world: World) -> None:
    record = await world.ready(images.jpeg())
    await world.trash.delete(principal(), record.image_id, None)
    before = stored(world, record)
    world.clock.advance(days=1)
    await world.trash.delete(principal(), record.image_id, None)
    assert stored(world, record) == before


async def test_a_pending_upload_has_nothing_to_restore_and_goes_at_once(world: World) -> None:
    record, _ = await world.uploads.create_upload(
        principal(), UploadRequest(content_type="image/jpeg")
    )
    world.store.put(incoming_key(record), b"half")
    await world.trash.delete(principal(), record.image_id, None)
    assert stored(world, record) is None
    assert incoming_key(record) not in world.store.objects


async def test_a_permanent_delete_removes_objects_record_and_usage(world: World) -> None:
    record = await world.ready(images.jpeg())
    world.store.put(f"{image_prefix('alice', record.image_id)}thumb.webp", b"variant")
    await world.trash.delete(principal(), record.image_id, None, permanent=True)
    assert stored(world, record) is None
    assert world.store.objects == {}
    assert world.table.usages["alice"] == Usage(0, 0)
    assert (events.DELETED, record.image_id) in heard(world)


async def test_with_no_trash_days_a_delete_is_permanent() -> None:
    world = make_world(trash_days=0)
    record = await world.ready(images.jpeg())
    await world.trash.delete(principal(), record.image_id, None)
    assert stored(world, record) is None


async def test_deleting_another_owners_image_is_not_found(world: World) -> None:
    record = await world.ready(images.jpeg())
    with pytest.raises(ImageNotFound):
        await world.trash.delete(principal("bob"), record.image_id, None, permanent=True)
    assert stored(world, record) is not None


async def test_deleting_a_missing_image_is_not_found(world: World) -> None:
    with pytest.raises(ImageNotFound):
        await world.trash.delete(principal(), "missing", None)


async def test_a_delete_cut_short_is_finished_by_its_retry(world: World) -> None:
    record = await world.ready(images.jpeg())
    world.store.outage = "s3"
    with pytest.raises(Exception):  # noqa: B017, PT011  # the outage, whatever it is named
        await world.trash.delete(principal(), record.image_id, None, permanent=True)
    assert stored(world, record).status is ImageStatus.DELETING  # type: ignore[union-attr]
    world.store.outage = None
    await world.trash.delete(principal(), record.image_id, None, permanent=True)
    assert stored(world, record) is None
    assert world.store.objects == {}


async def test_a_deleting_image_is_finished_by_the_sweeper(world: World) -> None:
    record = await world.ready(images.jpeg())
    marked = await world.table.mark_deleting(record, updated_at=world.clock())
    assert marked is not None
    await world.trash.finish_delete(marked)
    assert stored(world, record) is None
    await world.trash.finish_delete(marked)  # again: already done, and no second event
    assert heard(world).count((events.DELETED, record.image_id)) == 1


async def test_an_admin_deletes_for_the_owner(world: World) -> None:
    record = await world.ready(images.jpeg())
    await world.trash.delete(principal("root", admin=True), record.image_id, "alice")
    assert stored(world, record).status is ImageStatus.TRASHED  # type: ignore[union-attr]


# -- restore ---------------------------------------------------------------------------------


async def test_a_restore_gives_back_the_status_it_had(world: World) -> None:
    record = await world.ready(images.jpeg())
    await world.trash.delete(principal(), record.image_id, None)
    restored = await world.trash.restore(principal(), record.image_id, None)
    assert (restored.status, restored.trashed_from, restored.trashed_at) == (
        ImageStatus.READY,
        None,
        None,
    )
    assert (events.RESTORED, record.image_id) in heard(world)


async def test_a_restored_processing_image_is_queued_again(world: World) -> None:
    record = await world.uploaded(images.jpeg())
    await world.trash.delete(principal(), record.image_id, None)
    sent = len(world.jobs.sent)
    restored = await world.trash.restore(principal(), record.image_id, None)
    assert restored.status is ImageStatus.PROCESSING
    assert world.jobs.sent[sent:] == [
        {"type": "process", "user_id": "alice", "image_id": record.image_id}
    ]


async def test_only_what_is_in_the_trash_is_restored(world: World) -> None:
    record = await world.ready(images.jpeg())
    with pytest.raises(Conflict) as refused:
        await world.trash.restore(principal(), record.image_id, None)
    assert refused.value.code == "not_in_trash"
    assert refused.value.details["status"] == "ready"


async def test_a_purged_image_cannot_be_restored(world: World) -> None:
    record = await world.ready(images.jpeg())
    await world.trash.delete(principal(), record.image_id, None)
    await world.trash.delete(principal(), record.image_id, None, permanent=True)
    with pytest.raises(ImageNotFound):
        await world.trash.restore(principal(), record.image_id, None)


async def test_restoring_another_owners_image_is_not_found(world: World) -> None:
    record = await world.ready(images.jpeg())
    await world.trash.delete(principal(), record.image_id, None)
    with pytest.raises(ImageNotFound):
        await world.trash.restore(principal("bob"), record.image_id, None)


# -- purge -----------------------------------------------------------------------------------


async def test_a_purge_deletes_a_trashed_image_for_good(world: World) -> None:
    record = await world.ready(images.jpeg())
    await world.trash.delete(principal(), record.image_id, None)
    assert await world.trash.purge(stored(world, record))
    assert stored(world, record) is None
    assert world.store.objects == {}


async def test_a_restore_wins_against_a_purge_of_what_it_read(world: World) -> None:
    record = await world.ready(images.jpeg())
    await world.trash.delete(principal(), record.image_id, None)
    read_by_the_sweeper = stored(world, record)
    await world.trash.restore(principal(), record.image_id, None)
    assert not await world.trash.purge(read_by_the_sweeper)
    assert stored(world, record).status is ImageStatus.READY  # type: ignore[union-attr]
    assert record.s3_key in world.store.objects


async def test_emptying_the_trash_purges_every_page_of_it(world: World) -> None:
    # More than a page of the trash (100), stored as completion would have left them: more
    # uploads than one caller's rate allows at once.
    for number in range(105):
        await world.table.create(ready_record(world, f"img-{number:03}"))
        await world.trash.delete(principal(), f"img-{number:03}", None)
    kept = await world.table.create(ready_record(world, "kept"))
    assert await world.trash.empty_trash(principal(), None) == 105
    assert list(world.table.records) == [("alice", kept.image_id)]
    page, _ = await world.table.list_page("alice", ListFilter(status=ImageStatus.TRASHED), 10, None)
    assert page == []


async def test_emptying_an_empty_trash_purges_nothing(world: World) -> None:
    assert await world.trash.empty_trash(principal(), None) == 0


async def test_emptying_the_trash_is_the_owners_alone(world: World) -> None:
    record = await world.ready(images.jpeg(), user="bob")
    await world.trash.delete(principal("bob"), record.image_id, None)
    assert await world.trash.empty_trash(principal("alice"), None) == 0
    assert stored(world, record) is not None
