"""Creating uploads (domain/uploads.py) over the fakes: every rejection, the quota, the rate,
idempotent replays, de-duplication, and what the URLs sign."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from image_service.domain.errors import (
    Conflict,
    Forbidden,
    ImageNotFound,
    InvalidRequest,
    QuotaExceeded,
    RateLimited,
    TooManyHeld,
)
from image_service.domain.layout import incoming_key, original_key
from image_service.domain.models import MIN_PART_BYTES, ImageStatus, Usage
from image_service.domain.uploads import (
    MAX_CHECKED_DIGESTS,
    MAX_PARTS,
    UploadRequest,
    hex_digest,
    part_sizes,
)
from tests import images
from tests.unit.domain.conftest import WEBHOOK_SECRET, World, make_world, principal, sha256_base64

MiB = 1024 * 1024


async def create(world: World, user: str = "alice", **request: object):  # type: ignore[no-untyped-def]
    request.setdefault("content_type", "image/jpeg")
    return await world.uploads.create_upload(principal(user), UploadRequest(**request))  # type: ignore[arg-type]


# -- what a new upload is --------------------------------------------------------------------


async def test_a_new_upload_is_a_pending_record_stored_before_its_url(world: World) -> None:
    record, upload = await create(world, tags=["Cat", "cat", "Dog"], description="two")
    assert world.table.records[("alice", record.image_id)].status is ImageStatus.PENDING
    assert record.tags == ["cat", "dog"]
    assert record.s3_key == original_key("alice", record.image_id)
    assert upload.method == "PUT"
    assert upload.expires_at == world.clock() + timedelta(seconds=300)
    assert world.store.signed == [("PUT", incoming_key(record))]


async def test_the_content_type_is_taken_in_lowercase(world: World) -> None:
    record, _ = await create(world, content_type="IMAGE/PNG")
    assert record.content_type == "image/png"


async def test_a_declared_size_and_checksum_are_signed_with_if_none_match(world: World) -> None:
    checksum = sha256_base64(b"x")
    _, upload = await create(world, size=1234, checksum_sha256=checksum)
    assert upload.headers == {
        "Content-Type": "image/jpeg",
        "Content-Length": "1234",
        "x-amz-checksum-sha256": checksum,
        "If-None-Match": "*",
    }


async def test_without_a_declared_size_the_original_curl_flow_stays_open(world: World) -> None:
    _, upload = await create(world)
    assert upload.headers == {"Content-Type": "image/jpeg"}


async def test_a_post_policy_pins_the_declared_size_or_the_largest(world: World) -> None:
    _, exact = await create(world, method="POST", size=99)
    _, ranged = await create(world, method="POST")
    assert exact.fields["range"] == "99-99"
    assert ranged.fields["range"] == f"1-{20 * MiB}"


async def test_a_multipart_upload_gets_a_url_per_part(world: World) -> None:
    size = 2 * 8 * MiB + 1
    record, upload = await create(world, method="MULTIPART", size=size)
    assert upload.method == "MULTIPART"
    assert [p.size for p in upload.parts] == [8 * MiB, 8 * MiB, 1]
    assert record.upload_id == upload.upload_id in world.store.uploads
    assert all(p.headers["Content-Length"] == str(p.size) for p in upload.parts)


async def test_part_checksums_are_signed_into_each_part(world: World) -> None:
    sums = [sha256_base64(bytes([n])) for n in range(2)]
    _, upload = await create(
        world, method="MULTIPART", size=MIN_PART_BYTES + 1, part_size=MIN_PART_BYTES,
        part_checksums=sums,
    )  # fmt: skip
    assert [p.headers["x-amz-checksum-sha256"] for p in upload.parts] == sums


@pytest.mark.parametrize(
    ("size", "part", "expected"),
    [(10, 4, [4, 4, 2]), (8, 4, [4, 4]), (3, 4, [3]), (0, 4, [])],
)
def test_part_sizes_cut_the_last_part_short(size: int, part: int, expected: list[int]) -> None:
    assert part_sizes(size, part) == expected


@pytest.mark.parametrize(
    "checksum",
    ["A" * 64, "a" * 64, sha256_base64(b"bytes")],
)
def test_a_digest_reads_as_hex_whichever_way_it_was_written(checksum: str) -> None:
    digest = hex_digest(checksum)
    assert len(digest) == 64
    assert digest == digest.lower()


# -- rejections ------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["image/tiff", "text/html", "image/svg+xml", ""])
async def test_a_type_not_accepted_is_refused(world: World, content_type: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await create(world, content_type=content_type)
    assert refused.value.code == "unsupported_content_type"
    assert world.table.records == {}


async def test_a_declared_size_over_the_limit_is_refused_with_the_multipart_hint(
    world: World,
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await create(world, size=20 * MiB + 1)
    assert refused.value.code == "file_too_large"
    assert "MULTIPART" in refused.value.details["hint"]


async def test_the_largest_single_upload_is_accepted(world: World) -> None:
    record, _ = await create(world, size=20 * MiB)
    assert record.declared_size == 20 * MiB


async def test_a_multipart_upload_must_declare_its_size(world: World) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await create(world, method="MULTIPART")
    assert refused.value.code == "size_required"


async def test_a_multipart_upload_over_its_limit_is_refused(world: World) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await create(world, method="MULTIPART", size=1024 * MiB + 1)
    assert refused.value.code == "file_too_large"


@pytest.mark.parametrize("part_size", [MIN_PART_BYTES - 1, 1, 5 * 1024 * MiB + 1])
async def test_a_part_size_outside_s3s_bounds_is_refused(world: World, part_size: int) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await create(world, method="MULTIPART", size=50 * MiB, part_size=part_size)
    assert refused.value.code == "invalid_part_size"


async def test_more_parts_than_the_service_takes_are_refused_with_the_size_to_use() -> None:
    world = make_world(max_multipart_bytes=5 * 1024 * MiB)
    size = MIN_PART_BYTES * MAX_PARTS + 1
    with pytest.raises(InvalidRequest) as refused:
        await create(world, method="MULTIPART", size=size, part_size=MIN_PART_BYTES)
    assert refused.value.code == "too_many_parts"
    assert refused.value.details["min_part_size"] * MAX_PARTS >= size


@pytest.mark.parametrize("given", [1, 3])
async def test_part_checksums_must_be_one_per_part(world: World, given: int) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await create(
            world, method="MULTIPART", size=2 * MIN_PART_BYTES, part_size=MIN_PART_BYTES,
            part_checksums=[sha256_base64(b"x")] * given,
        )  # fmt: skip
    assert refused.value.code == "part_checksums_mismatch"


async def test_return_if_exists_needs_the_checksum_to_look_for(world: World) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await create(world, if_exists="return")
    assert refused.value.code == "checksum_required"


async def test_a_callback_url_needs_webhooks_configured(world: World) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await create(world, callback_url="https://example.com/hook")
    assert refused.value.code == "webhooks_not_configured"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://10.0.0.8/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "ftp://example.com/hook",
        "https://user:pass@example.com/hook",
    ],
)
async def test_a_callback_to_a_private_or_odd_address_is_refused(url: str) -> None:
    world = make_world(webhook_secret=WEBHOOK_SECRET)
    with pytest.raises(InvalidRequest) as refused:
        await create(world, callback_url=url)
    assert refused.value.code == "callback_url_not_allowed"


async def test_a_public_callback_is_kept_on_the_record() -> None:
    world = make_world(webhook_secret=WEBHOOK_SECRET)
    record, _ = await create(world, callback_url="https://93.184.215.14/hook")
    assert record.callback_url == "https://93.184.215.14/hook"


async def test_only_an_admin_acts_for_another_user(world: World) -> None:
    with pytest.raises(Forbidden):
        await create(world, user="mallory", user_id="alice")
    record, _ = await world.uploads.create_upload(
        principal("admin", admin=True), UploadRequest(content_type="image/jpeg", user_id="bob")
    )
    assert record.user_id == "bob"


async def test_the_upload_rate_is_the_callers_burst_then_refused(world: World) -> None:
    for _ in range(world.settings.upload_burst):
        await create(world)
    with pytest.raises(RateLimited):
        await create(world)
    await create(world, user="bob")  # another caller's budget is their own


async def test_an_admin_acting_for_others_spends_their_own_rate(world: World) -> None:
    admin = principal("admin", admin=True)
    for n in range(world.settings.upload_burst):
        await world.uploads.create_upload(
            admin, UploadRequest(content_type="image/jpeg", user_id=f"user{n}")
        )
    with pytest.raises(RateLimited):
        await world.uploads.create_upload(
            admin, UploadRequest(content_type="image/jpeg", user_id="another")
        )


# -- the quota -------------------------------------------------------------------------------


async def test_an_owner_with_no_image_left_is_refused() -> None:
    world = make_world(max_images_per_user=2)
    world.table.usages["alice"] = Usage(images=2, bytes=0)
    with pytest.raises(QuotaExceeded) as refused:
        await create(world)
    assert refused.value.details["max_images"] == 2


async def test_a_declared_size_past_the_byte_quota_is_refused() -> None:
    world = make_world(max_bytes_per_user=1000)
    world.table.usages["alice"] = Usage(images=1, bytes=900)
    await create(world, size=100)
    with pytest.raises(QuotaExceeded):
        await create(world, size=101)


async def test_the_upload_url_path_reads_a_usage_a_few_seconds_old() -> None:
    world = make_world(max_images_per_user=1)
    await create(world)  # reads and remembers: 0 images
    world.table.usages["alice"] = Usage(images=1, bytes=0)
    await create(world)  # passes on the remembered figure; completion's count is exact


async def test_open_multipart_uploads_are_bounded_per_user(world: World) -> None:
    for _ in range(world.settings.max_open_multipart_per_user):
        await create(world, method="MULTIPART", size=MIN_PART_BYTES)
    with pytest.raises(TooManyHeld) as refused:
        await create(world, method="MULTIPART", size=MIN_PART_BYTES)
    assert refused.value.code == "too_many_multipart_uploads"
    await create(world)  # a single upload holds no parts
    await create(world, user="bob", method="MULTIPART", size=MIN_PART_BYTES)


async def test_open_multipart_bytes_count_against_the_byte_quota() -> None:
    world = make_world(max_bytes_per_user=30 * MiB)
    await create(world, method="MULTIPART", size=20 * MiB)
    with pytest.raises(QuotaExceeded) as refused:
        await create(world, method="MULTIPART", size=11 * MiB)
    assert refused.value.details["pending_multipart_bytes"] == 20 * MiB


# -- idempotency -----------------------------------------------------------------------------


async def test_a_retried_keyed_request_gets_the_same_image_and_url(world: World) -> None:
    request = UploadRequest(content_type="image/jpeg", size=10)
    first = await world.uploads.create_upload(principal(), request, idempotency_key="k-1")
    again = await world.uploads.create_upload(principal(), request, idempotency_key="k-1")
    assert again[0].image_id == first[0].image_id
    assert again[1] == first[1]
    assert len(world.table.records) == 1


async def test_the_same_key_with_another_body_is_refused(world: World) -> None:
    await world.uploads.create_upload(
        principal(), UploadRequest(content_type="image/jpeg"), idempotency_key="k"
    )
    with pytest.raises(InvalidRequest) as refused:
        await world.uploads.create_upload(
            principal(), UploadRequest(content_type="image/png"), idempotency_key="k"
        )
    assert refused.value.code == "idempotency_key_reused"


@pytest.mark.parametrize("key", ["", "x" * 256, "with space", "tab\t", "é", "\x00"])
async def test_an_idempotency_key_is_printable_ascii_of_1_to_255(world: World, key: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await world.uploads.create_upload(
            principal(), UploadRequest(content_type="image/jpeg"), idempotency_key=key
        )
    assert refused.value.code == "invalid_idempotency_key"


async def test_a_key_is_the_callers_own(world: World) -> None:
    request = UploadRequest(content_type="image/jpeg")
    mine = await world.uploads.create_upload(principal("alice"), request, idempotency_key="k")
    theirs = await world.uploads.create_upload(principal("bob"), request, idempotency_key="k")
    assert mine[0].image_id != theirs[0].image_id


async def test_a_key_whose_url_expired_starts_a_new_upload(world: World) -> None:
    request = UploadRequest(content_type="image/jpeg")
    first = await world.uploads.create_upload(principal(), request, idempotency_key="k")
    world.clock.advance(seconds=world.settings.upload_url_expiry)
    again = await world.uploads.create_upload(principal(), request, idempotency_key="k")
    assert again[0].image_id != first[0].image_id


async def test_a_keyed_multipart_replay_signs_the_same_parts_again(world: World) -> None:
    request = UploadRequest(content_type="image/jpeg", method="MULTIPART", size=MIN_PART_BYTES)
    first = await world.uploads.create_upload(principal(), request, idempotency_key="m")
    again = await world.uploads.create_upload(principal(), request, idempotency_key="m")
    assert again[1].upload_id == first[1].upload_id
    assert [p.size for p in again[1].parts] == [p.size for p in first[1].parts]
    assert len(world.store.uploads) == 1


async def test_a_twin_that_stored_its_answer_first_wins_and_ours_is_dropped(
    world: World,
) -> None:
    request = UploadRequest(content_type="image/jpeg")
    twin = await world.uploads.create_upload(principal(), request, idempotency_key="t")
    # Our request read no answer (the twin's was not stored yet), then lost the write.
    stored = world.idempotency.entries.pop(("alice", "t"))
    real_put = world.idempotency.put

    async def twin_first(caller, key, entry, now):  # type: ignore[no-untyped-def]
        world.idempotency.entries[(caller, key)] = stored
        return await real_put(caller, key, entry, now)

    world.idempotency.put = twin_first  # type: ignore[method-assign]
    answer = await world.uploads.create_upload(principal(), request, idempotency_key="t")
    assert answer[0].image_id == twin[0].image_id
    assert list(world.table.records) == [("alice", twin[0].image_id)]


# -- de-duplication --------------------------------------------------------------------------


async def test_return_if_exists_answers_the_owners_image_of_those_bytes(world: World) -> None:
    data = images.jpeg()
    existing = await world.uploaded(data, checksum_sha256=sha256_base64(data))
    record, upload = await create(world, if_exists="return", checksum_sha256=sha256_base64(data))
    assert upload is None
    assert record.image_id == existing.image_id


async def test_return_if_exists_creates_when_only_another_owner_has_the_bytes(
    world: World,
) -> None:
    data = images.jpeg()
    await world.uploaded(data, user="bob")
    record, upload = await create(world, if_exists="return", checksum_sha256=sha256_base64(data))
    assert upload is not None
    assert record.status is ImageStatus.PENDING


async def test_check_names_the_owners_images_of_each_digest(world: World) -> None:
    data = images.png()
    owned = await world.uploaded(data, content_type="image/png")
    other = sha256_base64(b"not uploaded")
    found = await world.uploads.check_digests(
        principal(), None, [sha256_base64(data), other, hex_digest(sha256_base64(data))]
    )
    assert [f.image_id for f in found] == [owned.image_id, None, owned.image_id]


async def test_check_takes_at_most_its_limit(world: World) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await world.uploads.check_digests(
            principal(), None, [sha256_base64(b"x")] * (MAX_CHECKED_DIGESTS + 1)
        )
    assert refused.value.code == "too_many_digests"


# -- resuming a multipart upload -------------------------------------------------------------


async def test_parts_lists_what_s3_holds_and_signs_the_rest(world: World) -> None:
    record, upload = await create(
        world, method="MULTIPART", size=2 * MIN_PART_BYTES, part_size=MIN_PART_BYTES
    )
    world.store.put_part(upload.upload_id, 1, b"x" * MIN_PART_BYTES)
    world.store.put_part(upload.upload_id, 2, b"short")  # at the wrong length: sent again
    progress = await world.uploads.parts(principal(), record.image_id, None)
    assert [p.part_number for p in progress.uploaded] == [1]
    assert [p.part_number for p in progress.missing] == [2]


async def test_parts_of_a_single_upload_are_refused(world: World) -> None:
    record, _ = await create(world)
    with pytest.raises(Conflict) as refused:
        await world.uploads.parts(principal(), record.image_id, None)
    assert refused.value.code == "not_multipart"


async def test_parts_once_assembled_say_complete_it(world: World) -> None:
    record, upload = await create(world, method="MULTIPART", size=MIN_PART_BYTES)
    world.store.uploads.pop(upload.upload_id)  # assembled (or aborted) meanwhile
    with pytest.raises(Conflict) as refused:
        await world.uploads.parts(principal(), record.image_id, None)
    assert refused.value.code == "upload_completed"


async def test_parts_of_another_owners_upload_are_not_found(world: World) -> None:
    record, _ = await create(world, method="MULTIPART", size=MIN_PART_BYTES)
    with pytest.raises(ImageNotFound):
        await world.uploads.parts(principal("bob"), record.image_id, None)


async def test_an_upload_records_what_the_client_declared(world: World) -> None:
    record, _ = await create(
        world, size=5, checksum_sha256=sha256_base64(b"12345"), filename="a.jpg"
    )
    stored = world.table.records[("alice", record.image_id)]
    assert replace(stored, revision=0) == replace(record, revision=0)
    assert (stored.declared_size, stored.filename) == (5, "a.jpg")
