"""An owner's library (domain/library.py) over the fakes: reads, edits, listing cursors and
downloads, each refusal included, and who may see what."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

import pytest

from image_service.domain.errors import (
    Conflict,
    Forbidden,
    ImageNotFound,
    InvalidRequest,
)
from image_service.domain.models import (
    ImageRecord,
    ImageStatus,
    ListFilter,
    Variant,
)
from image_service.domain.uploads import UploadRequest
from image_service.imaging.exif import PhotoMetadata
from tests import images
from tests.unit.domain.conftest import WEBHOOK_SECRET, World, make_world, principal

EVERYTHING = ListFilter()


async def listed(
    world: World, filters: ListFilter = EVERYTHING, *, limit: int = 100, user: str = "alice"
) -> list[str]:
    """Every id the listing gives, page after page."""
    ids: list[str] = []
    cursor = None
    while True:
        page = await world.library.list(principal(user), None, filters, limit=limit, cursor=cursor)
        ids += [record.image_id for record in page.items]
        if page.next_cursor is None:
            return ids
        cursor = page.next_cursor


async def pending(world: World, user: str = "alice", **request: object) -> ImageRecord:
    request.setdefault("content_type", "image/jpeg")
    record, _ = await world.uploads.create_upload(principal(user), UploadRequest(**request))  # type: ignore[arg-type]
    return record  # type: ignore[no-any-return]


# -- reading ---------------------------------------------------------------------------------


async def test_an_owner_reads_their_image(world: World) -> None:
    record = await pending(world)
    assert (await world.library.get(principal(), record.image_id, None)).image_id == record.image_id


async def test_another_owners_image_is_not_found_not_forbidden(world: World) -> None:
    record = await pending(world)
    with pytest.raises(ImageNotFound):
        await world.library.get(principal("bob"), record.image_id, None)


async def test_asking_for_another_owner_without_admin_is_forbidden(world: World) -> None:
    record = await pending(world)
    with pytest.raises(Forbidden):
        await world.library.get(principal("bob"), record.image_id, "alice")


async def test_an_admin_reads_for_the_owner(world: World) -> None:
    record = await pending(world)
    found = await world.library.get(principal("root", admin=True), record.image_id, "alice")
    assert found.user_id == "alice"


async def test_a_wait_without_a_watcher_answers_at_once(world: World) -> None:
    record = await pending(world)
    found = await world.library.get(principal(), record.image_id, None, wait_seconds=20)
    assert found.status is ImageStatus.PENDING


# -- editing ---------------------------------------------------------------------------------


async def test_tags_are_replaced_and_normalized(world: World) -> None:
    record = await pending(world, tags=["a"])
    world.clock.advance(seconds=5)
    updated = await world.library.update(
        principal(), record.image_id, None, tags=["Sea", "sea", "Sun"], description=None
    )
    assert updated.tags == ["sea", "sun"]
    assert updated.updated_at == world.clock()
    assert updated.description == ""


async def test_a_description_alone_keeps_the_tags(world: World) -> None:
    record = await pending(world, tags=["a"])
    updated = await world.library.update(
        principal(), record.image_id, None, tags=None, description="new"
    )
    assert (updated.tags, updated.description) == (["a"], "new")


async def test_an_edit_with_nothing_to_change_is_refused(world: World) -> None:
    record = await pending(world)
    with pytest.raises(InvalidRequest) as refused:
        await world.library.update(principal(), record.image_id, None, tags=None, description=None)
    assert refused.value.code == "nothing_to_update"


async def test_editing_a_missing_image_is_not_found(world: World) -> None:
    with pytest.raises(ImageNotFound):
        await world.library.update(principal(), "nope", None, tags=["a"], description=None)


async def test_editing_another_owners_image_is_not_found(world: World) -> None:
    record = await pending(world)
    with pytest.raises(ImageNotFound):
        await world.library.update(
            principal("bob"), record.image_id, None, tags=["x"], description=None
        )


# -- listing ---------------------------------------------------------------------------------


async def many(world: World, count: int, **request: object) -> list[str]:
    ids = []
    for _ in range(count):
        ids.append((await pending(world, **request)).image_id)
        world.clock.advance(seconds=1)
    return ids


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 10, 11])
async def test_pages_are_complete_newest_first_at_any_page_size(world: World, limit: int) -> None:
    ids = await many(world, 10)
    assert await listed(world, limit=limit) == ids[::-1]


async def test_an_empty_library_is_one_empty_page(world: World) -> None:
    page = await world.library.list(principal(), None, ListFilter(), limit=20, cursor=None)
    assert (page.items, page.next_cursor) == ([], None)


async def test_a_full_last_page_has_no_cursor(world: World) -> None:
    await many(world, 4)
    page = await world.library.list(principal(), None, ListFilter(), limit=4, cursor=None)
    assert page.next_cursor is None


async def test_another_owners_images_never_appear(world: World) -> None:
    mine = await many(world, 3)
    await pending(world, user="bob")
    assert sorted(await listed(world)) == sorted(mine)


async def test_a_cursor_is_the_owners_own(world: World) -> None:
    await many(world, 3)
    page = await world.library.list(principal(), None, ListFilter(), limit=1, cursor=None)
    with pytest.raises(InvalidRequest):
        await world.library.list(
            principal("bob"), None, ListFilter(), limit=1, cursor=page.next_cursor
        )


@pytest.mark.parametrize("cursor", ["x", "AAAA", "not a cursor", "é", "A" * 500])
async def test_a_forged_cursor_is_refused(world: World, cursor: str) -> None:
    with pytest.raises(InvalidRequest):
        await world.library.list(principal(), None, ListFilter(), limit=1, cursor=cursor)


async def test_an_empty_cursor_is_no_cursor(world: World) -> None:
    ids = await many(world, 2)
    page = await world.library.list(principal(), None, ListFilter(), limit=5, cursor="")
    assert [r.image_id for r in page.items] == ids[::-1]


async def test_a_start_after_the_end_is_refused(world: World) -> None:
    now = world.clock()
    with pytest.raises(InvalidRequest) as refused:
        await listed(world, ListFilter(start=now, end=now - timedelta(seconds=1)))
    assert refused.value.code == "invalid_date_range"


async def test_taken_from_after_taken_to_is_refused(world: World) -> None:
    now = world.clock()
    with pytest.raises(InvalidRequest) as refused:
        await listed(world, ListFilter(taken_from=now, taken_to=now - timedelta(days=1)))
    assert refused.value.code == "invalid_date_range"


async def test_a_date_range_is_inclusive(world: World) -> None:
    ids = await many(world, 5)
    start = world.table.records[("alice", ids[1])].upload_time
    end = world.table.records[("alice", ids[3])].upload_time
    assert await listed(world, ListFilter(start=start, end=end), limit=1) == ids[3:0:-1]


async def test_tags_filter_every_tag_and_in_any_case(world: World) -> None:
    both = await world.uploaded(images.jpeg(), tags=["sea", "sun"])
    await world.uploaded(images.jpeg(), tags=["sea"])
    await pending(world, tags=["sea", "sun"])  # pending: no bytes yet, listed by no tag
    found = await listed(world, ListFilter(tags=("SEA", "sun")))
    assert found == [both.image_id]


async def test_a_status_filter_lists_that_status_only(world: World) -> None:
    done = await world.uploaded(images.jpeg())
    await pending(world)
    assert await listed(world, ListFilter(status=ImageStatus.PROCESSING)) == [done.image_id]


async def test_the_trash_lists_apart_newest_trashed_first(world: World) -> None:
    first = await world.ready(images.jpeg())
    second = await world.ready(images.jpeg())
    kept = await world.ready(images.jpeg())
    await world.trash.delete(principal(), second.image_id, None)
    world.clock.advance(seconds=1)
    await world.trash.delete(principal(), first.image_id, None)
    assert await listed(world, ListFilter(status=ImageStatus.TRASHED), limit=1) == [
        first.image_id,
        second.image_id,
    ]
    assert await listed(world) == [kept.image_id]


async def test_ordered_by_taken_lists_only_images_whose_exif_says_when(world: World) -> None:
    older, newer, unknown = [await world.ready(images.jpeg()) for _ in range(3)]
    for record, taken in (
        (older, datetime(2020, 1, 1, tzinfo=UTC)),
        (newer, datetime(2024, 1, 1, tzinfo=UTC)),
    ):
        key = (record.user_id, record.image_id)
        world.table.records[key] = replace(
            world.table.records[key], photo=PhotoMetadata(taken_at=taken)
        )
    assert await listed(world, ListFilter(by_taken=True), limit=1) == [
        newer.image_id,
        older.image_id,
    ]
    in_2020 = ListFilter(
        taken_from=datetime(2019, 1, 1, tzinfo=UTC), taken_to=datetime(2021, 1, 1, tzinfo=UTC)
    )
    assert await listed(world, in_2020) == [older.image_id]
    assert unknown.image_id not in await listed(world, ListFilter(by_taken=True))


# -- downloads -------------------------------------------------------------------------------


async def test_a_download_is_a_short_signed_url_of_the_original(world: World) -> None:
    record = await world.ready(images.jpeg(), filename="../../Holiday Photo.JPG")
    download = await world.library.download(principal(), record.image_id, None)
    assert unquote(download.url).startswith(f"https://fake-s3.invalid/{record.s3_key}?")
    assert download.expires_at == world.clock() + timedelta(seconds=300)


async def test_only_a_ready_image_is_downloaded(world: World) -> None:
    record = await world.uploaded(images.jpeg())
    with pytest.raises(Conflict) as refused:
        await world.library.download(principal(), record.image_id, None)
    assert refused.value.code == "image_not_ready"


@pytest.mark.parametrize(
    "status",
    [ImageStatus.TRASHED, ImageStatus.QUARANTINED, ImageStatus.DELETING, ImageStatus.REJECTED],
)
async def test_no_hidden_state_is_downloaded(world: World, status: ImageStatus) -> None:
    record = await world.ready(images.jpeg())
    key = (record.user_id, record.image_id)
    world.table.records[key] = replace(world.table.records[key], status=status)
    with pytest.raises(Conflict):
        await world.library.download(principal(), record.image_id, None)


async def test_a_variant_is_downloaded_by_name_and_format(world: World) -> None:
    record = await world.ready(images.jpeg())
    key = (record.user_id, record.image_id)
    variant = Variant("thumb", "webp", "image/webp", f"{record.s3_key}-thumb.webp", 10, 10, 99)
    world.table.records[key] = replace(world.table.records[key], variants=[variant])
    download = await world.library.download(
        principal(), record.image_id, None, variant="thumb", variant_format="webp"
    )
    assert "thumb.webp" in unquote(download.url)
    with pytest.raises(ImageNotFound):
        await world.library.download(principal(), record.image_id, None, variant="thumb")


async def test_an_admin_never_downloads_an_original_that_may_locate_its_owner(world: World) -> None:
    record = await world.ready(images.png(), content_type="image/png")
    with pytest.raises(Forbidden) as refused:
        await world.library.download(principal("root", admin=True), record.image_id, "alice")
    assert refused.value.code == "original_owner_only"
    assert (await world.library.download(principal(), record.image_id, None)).url


async def test_an_admin_downloads_a_jpeg_the_service_strips_of_gps(world: World) -> None:
    record = await world.ready(images.jpeg())
    assert await world.library.download(principal("root", admin=True), record.image_id, "alice")


async def test_with_gps_kept_even_a_jpeg_is_the_owners_alone() -> None:
    world = make_world(keep_gps=True)
    record = await world.ready(images.jpeg())
    with pytest.raises(Forbidden):
        await world.library.download(principal("root", admin=True), record.image_id, "alice")


# -- the callback key ------------------------------------------------------------------------


async def test_without_webhooks_there_is_no_callback_key(world: World) -> None:
    with pytest.raises(Conflict) as refused:
        world.library.callback_secret(principal(), None)
    assert refused.value.code == "webhooks_not_configured"


async def test_each_owner_has_a_callback_key_of_their_own() -> None:
    world = make_world(webhook_secret=WEBHOOK_SECRET)
    alice = world.library.callback_secret(principal("alice"), None)
    bob = world.library.callback_secret(principal("bob"), None)
    assert alice.startswith("whsec_")
    assert bob.startswith("whsec_")
    assert alice != bob
    assert world.library.callback_secret(principal("root", admin=True), "alice") == alice
    with pytest.raises(Forbidden):
        world.library.callback_secret(principal("bob"), "alice")
