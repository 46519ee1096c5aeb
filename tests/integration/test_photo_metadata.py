"""A photo's own metadata (EXIF) on ready images, GPS only to its owner and only when kept, and
listing by when photos were taken at one page read per page."""

from __future__ import annotations

from typing import Any

from tests import images
from tests.integration.conftest import Api, MakeApi


async def _ready(api: Api, data: bytes, **body: Any) -> dict[str, Any]:
    _, status, image = await api.upload(data, **body)
    assert (status, image["status"]) == (200, "ready"), image
    return image  # type: ignore[no-any-return]


async def test_a_ready_photo_carries_what_its_exif_says(api: Api) -> None:
    image = await _ready(api, images.camera_jpeg())
    assert image["photo"] == {
        "taken_at": "2024-07-14T16:30:05.000000Z",  # 18:30:05 at +02:00
        "camera": "Fujifilm X-T5",
        "lens": "Fujifilm XF35mmF1.4 R",
        "f_number": 2.8,
        "exposure_time": 0.004,
        "iso": 400,
        "focal_length": 35.0,
        "orientation": 1,
        "gps": None,  # not kept (the default): stripped from the file, and not recorded
    }
    listed = (await api.call("GET", "/images"))[1]["items"][0]
    assert listed["photo"] == image["photo"]


async def test_a_picture_without_exif_has_no_photo_metadata(api: Api) -> None:
    assert (await _ready(api, images.png(), content_type="image/png"))["photo"] is None


async def test_gps_is_shown_to_its_owner_only_when_kept(make_api: MakeApi) -> None:
    # GPS kept (IMAGE_SERVICE_KEEP_GPS, this test's subject): the owner sees where.
    api = await make_api(keep_gps=True)
    image = await _ready(api, images.camera_jpeg())
    assert image["photo"]["gps"] == {"latitude": 52.5200944, "longitude": -3.7, "altitude": 650.0}
    # An admin acting for the owner sees everything but the position.
    status, seen, _ = await api.call(
        "GET", f"/images/{image['image_id']}", user="ops", admin=True, params={"user_id": "alice"}
    )
    assert status == 200
    assert seen["photo"]["gps"] is None
    assert seen["photo"]["camera"] == "Fujifilm X-T5"
    status, page, _ = await api.call(
        "GET", "/images", user="ops", admin=True, params={"user_id": "alice"}
    )
    assert page["items"][0]["photo"]["gps"] is None


async def test_hostile_exif_is_cleaned_or_left_out(api: Api) -> None:
    data = images.camera_jpeg(
        taken="2024:13:45 99:99:99", offset="+99:00", make="Evil\x00\x1b[31mCam", model="\ud800X"
    )
    image = await _ready(api, data)
    photo = image["photo"]
    assert photo["taken_at"] is None
    # Control characters gone; the lone surrogate was already a "?" in the file Pillow wrote.
    assert photo["camera"] == "Evil [31mCam ?X"
    assert photo["iso"] == 400


async def test_listing_by_when_photos_were_taken_reads_one_page_per_page(api: Api) -> None:
    taken = {
        "b": "2023:05:01 10:00:00",
        "a": "2021:01:01 08:00:00",
        "d": "2025:12:24 20:00:00",
        "c": "2024:02:29 12:00:00",
    }
    ids = {}
    for name, moment in taken.items():  # uploaded in another order than taken
        shade = (ord(name) * 3 % 255, 80, 120)
        ids[name] = (await _ready(api, images.camera_jpeg(moment, offset=None, color=shade)))[
            "image_id"
        ]
    await _ready(api, images.png(), content_type="image/png")  # no EXIF: not in this order

    status, page, _ = await api.call("GET", "/images", params={"sort": "taken_at"})
    assert status == 200
    assert [item["image_id"] for item in page["items"]] == [ids[n] for n in "dcba"]

    params = {"taken_from": "2022-01-01", "taken_to": "2024-12-31"}
    _, page, _ = await api.call("GET", "/images", params=params)
    assert [item["image_id"] for item in page["items"]] == [ids["c"], ids["b"]]

    seen: list[str] = []
    cursor = None
    before = await api.metrics()
    while True:
        query = {"sort": "taken_at", "limit": "1", **({"cursor": cursor} if cursor else {})}
        _, page, _ = await api.call("GET", "/images", params=query)
        seen += [item["image_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    after = await api.metrics()
    assert seen == [ids[n] for n in "dcba"]
    read = (
        after[("image_service_dynamodb_items_read_total", ())]
        - before[("image_service_dynamodb_items_read_total", ())]
    )
    assert read <= 2 * len(seen)  # each page: itself and one look-ahead item

    status, error, _ = await api.call(
        "GET", "/images", params={"taken_from": "2025-01-01", "taken_to": "2024-01-01"}
    )
    assert (status, error["error"]["code"]) == (422, "invalid_date_range")
    status, error, _ = await api.call("GET", "/images", params={"sort": "size"})
    assert (status, error["error"]["code"]) == (422, "validation_error")
