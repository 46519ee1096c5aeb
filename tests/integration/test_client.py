"""`ImageServiceClient` against the real service: every call, through HTTP, on moto."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from image_service.client import ApiError, Image, ProcessingTimeout, StorageError, transfer
from image_service.client.api import MULTIPART_THRESHOLD_BYTES
from tests import images
from tests.integration.conftest import Api, MakeApi


async def test_an_image_goes_through_its_whole_life_with_the_client(api: Api) -> None:
    client = api.images("alice")
    data = images.noisy("JPEG")

    image = await client.upload(data, tags=["trip"], description="a beach", wait=True)
    assert isinstance(image, Image)
    assert (image.status, image.content_type, image.size) == ("ready", "image/jpeg", len(data))
    assert (image.tags, image.description) == (("trip",), "a beach")
    assert {(v.name, v.format) for v in image.variants} >= {("thumb", "webp"), ("thumb", "jpeg")}

    assert await client.get(image.image_id) == image
    assert [i.image_id for i in (await client.list(tags=["trip"])).items] == [image.image_id]

    edited = await client.update(image.image_id, tags=["sea"], description="the sea")
    assert (edited.tags, edited.description) == (("sea",), "the sea")
    assert (await client.list(tags=["trip"])).items == ()

    assert await client.download(image.image_id) == data
    thumb = await client.download(image.image_id, variant="thumb", format="webp")
    assert thumb[:4] == b"RIFF"
    assert thumb[8:12] == b"WEBP"

    url = await client.render_url(image.image_id, width=64, height=64, fit="cover")
    assert url == await client.render_url(image.image_id, width=64, height=64, fit="cover")
    rendition, content_type = await client.render(image.image_id, width=64, accept="image/webp")
    assert (content_type, rendition[8:12]) == ("image/webp", b"WEBP")
    assert image.thumbhash is not None

    await client.delete(image.image_id)  # into the trash
    assert (await client.get(image.image_id)).status == "trashed"
    assert [i.image_id for i in (await client.list(status="trashed")).items] == [image.image_id]
    assert (await client.restore(image.image_id)).status == "ready"
    await client.delete(image.image_id)
    assert await client.empty_trash() == 1
    with pytest.raises(ApiError) as missing:
        await client.get(image.image_id)
    assert (missing.value.status, missing.value.code) == (404, "image_not_found")
    assert api.object_keys() == []


async def test_iter_images_follows_the_cursor_over_every_page(api: Api) -> None:
    client = api.images("alice")
    uploaded = [(await client.upload(images.jpeg(), tags=["many"])).image_id for _ in range(5)]

    seen = [image.image_id async for image in client.iter_images(tags=["many"], page_size=2)]

    assert seen == uploaded[::-1]  # newest first, each once


async def test_a_post_policy_upload_reports_its_progress(api: Api) -> None:
    client = api.images("alice")
    data = images.noisy("PNG", 600, 400)  # several progress chunks
    reports: list[tuple[int, int]] = []

    image = await client.upload(
        data, method="POST", progress=lambda sent, total: reports.append((sent, total))
    )

    assert image.status == "processing"
    sent = [s for s, _ in reports]
    assert len(reports) > 1
    assert sent == sorted(sent)
    assert reports[-1] == (len(data), len(data))
    assert await client.download((await client.wait_until_processed(image.image_id)).image_id)


async def test_the_error_envelope_becomes_a_typed_api_error(api: Api) -> None:
    with pytest.raises(ApiError) as invalid:
        await api.images("alice").create_upload("image/jpeg", tags=["x" * 500])

    error = invalid.value
    assert (error.status, error.code) == (422, "validation_error")
    assert "tags" in error.details["fields"]
    assert error.request_id


async def test_a_rate_limit_carries_retry_after(make_api: MakeApi) -> None:
    api = await make_api(upload_burst=1, upload_rate_per_minute=1)
    client = api.images("alice")
    await client.create_upload("image/jpeg")

    with pytest.raises(ApiError) as limited:
        await client.create_upload("image/jpeg")

    assert (limited.value.status, limited.value.code) == (429, "rate_limited")
    assert limited.value.retry_after is not None
    assert limited.value.retry_after > 0


async def test_s3_refusing_the_bytes_is_a_storage_error(api: Api) -> None:
    client = api.images("alice")
    data = images.jpeg()
    ticket = await client.create_upload("image/jpeg", size=len(data))
    await client.send(ticket, data)

    with pytest.raises(StorageError) as refused:  # If-None-Match: * is signed in
        await client.send(ticket, data)

    assert refused.value.status == 412


async def test_waiting_for_an_image_that_never_arrives_times_out(api: Api) -> None:
    client = api.images("alice")
    ticket = await client.create_upload("image/jpeg")

    with pytest.raises(ProcessingTimeout):
        await client.wait_until_processed(ticket.image_id, max_wait=0.3)


async def test_a_user_cannot_reach_another_users_image_through_the_client(api: Api) -> None:
    image = await api.images("alice").upload(images.jpeg())

    with pytest.raises(ApiError) as hidden:
        await api.images("mallory").delete(image.image_id)

    assert hidden.value.status == 404
    assert (await api.images("alice").get(image.image_id)).image_id == image.image_id


async def test_ready_reports_every_backend(api: Api) -> None:
    report = await api.images().ready()

    assert report["checks"] == {"s3": "ok", "dynamodb": "ok", "sqs": "ok"}


async def test_a_large_image_goes_up_in_parallel_parts_with_progress(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = api.images("alice")
    data = images.noisy_png(2400, 2400)  # above the client's 16 MiB threshold
    assert len(data) > MULTIPART_THRESHOLD_BYTES
    reports: list[tuple[int, int]] = []
    in_flight: set[int] = set()
    most_at_once = 0

    def progress(sent: int, total: int) -> None:
        reports.append((sent, total))

    original_put = transfer._put_part

    async def counted_put(session: Any, part: Any, data: bytes, report: Any) -> None:
        nonlocal most_at_once
        in_flight.add(part.part_number)
        most_at_once = max(most_at_once, len(in_flight))
        try:
            await original_put(session, part, data, report)
        finally:
            in_flight.discard(part.part_number)

    monkeypatch.setattr(transfer, "_put_part", counted_put)  # observes, changes nothing
    image = await client.upload(data, progress=progress, wait=True)
    assert (image.status, image.size) == ("ready", len(data))
    assert most_at_once == 3  # all three 8 MiB parts at once (up to 4)
    assert reports[-1] == (len(data), len(data))
    assert [sent for sent, _ in reports] == sorted(sent for sent, _ in reports)
    assert await client.download(image.image_id) == data

    again = await client.upload(data, skip_existing=True)
    assert (again.image_id, again.existing) == (image.image_id, True)
    assert await client.check([image.sha256 or "", "0" * 64]) == {
        image.sha256: image.image_id,
        "0" * 64: None,
    }


async def test_skip_existing_answers_a_small_image_already_there(api: Api) -> None:
    client = api.images("alice")
    data = images.png()
    first = await client.upload(data, wait=True)
    assert not first.existing
    again = await client.upload(data, skip_existing=True)
    assert (again.image_id, again.status, again.existing) == (first.image_id, "ready", True)
    other = await client.upload(images.gif(), skip_existing=True)
    assert other.image_id != first.image_id
    assert not other.existing


async def test_the_client_reads_photo_metadata_and_lists_by_when_taken(api: Api) -> None:
    client = api.images("alice")
    older = await client.upload(images.camera_jpeg("2020:01:01 00:00:00"), wait=True)
    newer = await client.upload(
        images.camera_jpeg("2022:01:01 00:00:00", color=(1, 1, 1)), wait=True
    )
    assert newer.photo is not None
    assert (newer.photo.camera, newer.photo.iso, newer.photo.gps) == ("Fujifilm X-T5", 400, None)
    page = await client.list(sort="taken_at")
    assert [image.image_id for image in page.items] == [newer.image_id, older.image_id]
    page = await client.list(taken_to=date(2021, 1, 1))
    assert [image.image_id for image in page.items] == [older.image_id]
