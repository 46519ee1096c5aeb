"""The item codec, the key layout and list cursors: pure functions, no server."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from image_service.domain.cursor import CursorCodec, CursorPosition
from image_service.domain.errors import InvalidRequest
from image_service.domain.layout import image_prefix, incoming_key, key_prefix, quarantine_key
from image_service.domain.models import ImageRecord, ImageStatus, Variant
from image_service.storage.dynamo.codec import (
    EXPIRY_ATTRIBUTE,
    from_item,
    tag_copies,
    tag_copy_id,
    to_item,
)

WHEN = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)


def _record(**changes: object) -> ImageRecord:
    record = ImageRecord(
        user_id="alice@example.com",
        image_id="6f1c2b9e-3d4a-4b5c-8d7e-9f0a1b2c3d4e",
        s3_key="images/alice%40example%2Ecom/6f1c2b9e-3d4a-4b5c-8d7e-9f0a1b2c3d4e/original",
        content_type="image/jpeg",
        status=ImageStatus.READY,
        upload_time=WHEN,
        updated_at=WHEN,
        tags=["cat", "beach"],
        description="line one\nline two",
        size=1234,
        width=640,
        height=480,
        sha256="ab" * 32,
        counted_bytes=1234,
        variants=[Variant("thumb", "webp", "image/webp", "k", 256, 192, 99)],
        revision=3,
    )
    return replace(record, **changes)  # type: ignore[arg-type]


def test_an_item_reads_back_as_the_record_it_was_written_from() -> None:
    record = _record()
    assert from_item(to_item(record)) == record


def test_pending_and_rejected_records_expire_and_the_rest_do_not() -> None:
    assert EXPIRY_ATTRIBUTE in to_item(_record(status=ImageStatus.PENDING), dead_record_ttl=60)
    assert EXPIRY_ATTRIBUTE in to_item(_record(status=ImageStatus.REJECTED), dead_record_ttl=60)
    assert EXPIRY_ATTRIBUTE not in to_item(_record(), dead_record_ttl=60)


def test_a_tag_copy_per_tag_reads_back_as_its_image_and_stays_out_of_other_indexes() -> None:
    record = _record()
    copies = tag_copies(record, to_item(record))
    assert [copy["image_id"]["S"] for copy in copies] == [
        tag_copy_id(record.image_id, tag) for tag in record.tags
    ]
    assert all("status_key" not in copy and "upload_sort" not in copy for copy in copies)
    assert all(from_item(copy) == record for copy in copies)
    assert tag_copies(_record(status=ImageStatus.PENDING), to_item(record)) == []


@pytest.mark.parametrize("owner", ["../etc", "a/b", "..", "émile", "x" * 256])
def test_an_owner_is_one_level_of_the_key_whatever_it_holds(owner: str) -> None:
    record = _record(user_id=owner)
    prefix = key_prefix(owner)
    assert "/" not in prefix
    assert "." not in prefix
    for key in (incoming_key(record), image_prefix(owner, record.image_id), quarantine_key(record)):
        assert key.split("/")[1] == prefix
    assert len(image_prefix(owner, record.image_id).encode()) < 1024 - 64  # S3's key limit


def test_a_cursor_is_bound_to_its_owner_and_refuses_tampering() -> None:
    codec = CursorCodec(b"k" * 32)
    position = CursorPosition(sort_key="2026-11-30T12:00:00.000000Z#id", image_id="id")
    cursor = codec.encode("alice", position)
    assert codec.decode("alice", cursor) == position
    with pytest.raises(InvalidRequest):
        codec.decode("bob", cursor)
    with pytest.raises(InvalidRequest):
        codec.decode("alice", cursor[:-2] + ("A" if cursor[-2] != "A" else "B") + cursor[-1])
