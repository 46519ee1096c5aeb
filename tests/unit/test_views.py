"""The hot path's JSON of images equals the documented schemas' dump, on generated records."""

from __future__ import annotations

from datetime import UTC

from hypothesis import given, settings
from hypothesis import strategies as st

from image_service.domain.models import (
    ImagePage,
    ImageRecord,
    ImageStatus,
    Variant,
)
from image_service.domain.views import image_view, page_view
from image_service.imaging.exif import GpsPosition, PhotoMetadata
from image_service.web.schemas import ImagePageSchema, ImageSchema

_text = st.text(max_size=30)
_count = st.none() | st.integers(min_value=0, max_value=2**53)
_moment = st.datetimes(timezones=st.just(UTC))
_variants = st.lists(
    st.builds(
        Variant,
        name=_text,
        format=st.sampled_from(["jpeg", "webp"]),
        content_type=_text,
        key=_text,
        width=st.integers(0, 10_000),
        height=st.integers(0, 10_000),
        size=st.integers(0, 2**40),
    ),
    max_size=4,
)
_real = st.none() | st.floats(allow_nan=False, allow_infinity=False)
_photos = st.none() | st.builds(
    PhotoMetadata,
    taken_at=st.none() | _moment,
    camera=st.none() | _text,
    lens=st.none() | _text,
    f_number=_real,
    exposure_time=_real,
    iso=st.none() | st.integers(0, 10**7),
    focal_length=_real,
    orientation=st.none() | st.integers(1, 8),
    gps=st.none()
    | st.builds(
        GpsPosition, latitude=st.floats(-90, 90), longitude=st.floats(-180, 180), altitude=_real
    ),
)
records = st.builds(
    ImageRecord,
    user_id=_text,
    image_id=_text,
    s3_key=_text,
    content_type=_text,
    status=st.sampled_from(list(ImageStatus)),
    upload_time=_moment,
    updated_at=_moment,
    tags=st.lists(_text, max_size=5),
    description=_text,
    filename=st.none() | _text,
    size=_count,
    width=_count,
    height=_count,
    sha256=st.none() | _text,
    variants=_variants,
    placeholder=st.none() | _text,
    thumbhash=st.none() | _text,
    photo=_photos,
)


@settings(max_examples=200, database=None)
@given(record=records)
def test_an_image_is_written_as_its_schema_dumps_it(record: ImageRecord) -> None:
    assert image_view(record) == ImageSchema().dump(record)


@settings(max_examples=50, database=None)
@given(items=st.lists(records, max_size=5), cursor=st.none() | _text)
def test_a_page_is_written_as_its_schema_dumps_it(
    items: list[ImageRecord], cursor: str | None
) -> None:
    page = ImagePage(items=items, next_cursor=cursor)
    assert page_view(page) == ImagePageSchema().dump(page)
