"""Per-user quotas: exact at completion (one transaction with the image), and checked at
upload-URL time against a briefly cached usage figure."""

from __future__ import annotations

from tests import images
from tests.conftest import MakeApi


async def test_the_image_count_quota(make_api: MakeApi) -> None:
    api = await make_api(max_images_per_user=2, usage_cache_seconds=0)
    for _ in range(2):
        _, status, image = await api.upload(images.png(), content_type="image/png")
        assert (status, image["status"]) == (200, "ready")
    status, body, _ = await api.call("POST", "/images/upload", json={"content_type": "image/png"})
    assert (status, body["error"]["code"]) == (403, "quota_exceeded")
    assert body["error"]["details"]["images"] == 2
    # Other users are not affected.
    await api.upload_url(user="bob")


async def test_deleting_frees_quota(make_api: MakeApi) -> None:
    api = await make_api(max_images_per_user=1, usage_cache_seconds=0)
    upload, _, _ = await api.upload(images.png(), content_type="image/png")
    status, _, _ = await api.call("POST", "/images/upload", json={"content_type": "image/png"})
    assert status == 403
    assert (await api.call("DELETE", f"/images/{upload['image_id']}"))[0] == 204
    _, status, image = await api.upload(images.png(), content_type="image/png")
    assert (status, image["status"]) == (200, "ready")


async def test_completion_is_exact_even_when_the_cached_figure_is_stale(make_api: MakeApi) -> None:
    api = await make_api(max_images_per_user=1, usage_cache_seconds=3600)
    first = await api.upload_url(content_type="image/png")
    second = await api.upload_url(content_type="image/png")  # allowed: nothing completed yet
    for upload in (first, second):
        assert await api.send_to_s3(upload, images.png()) == 200
    status, _, _ = await api.call("POST", f"/images/{first['image_id']}/complete")
    assert status == 200
    status, body, _ = await api.call("POST", f"/images/{second['image_id']}/complete")
    assert (status, body["error"]["code"]) == (403, "quota_exceeded")
    status, record, _ = await api.call("GET", f"/images/{second['image_id']}")
    assert record["status"] == "rejected"
    await api.processed(first["image_id"])
    assert not [k for k in api.object_keys() if second["image_id"] in k], "nothing of it is kept"


async def test_the_byte_quota(make_api: MakeApi) -> None:
    small = images.png()
    api = await make_api(max_bytes_per_user=len(small) + 10, usage_cache_seconds=0)
    _, status, _ = await api.upload(small, content_type="image/png")
    assert status == 200
    # A declared size that cannot fit is refused at once.
    status, body, _ = await api.call(
        "POST", "/images/upload", json={"content_type": "image/png", "size": 11}
    )
    assert (status, body["error"]["code"]) == (403, "quota_exceeded")
    # An undeclared one is let through and refused, exactly, at completion.
    upload = await api.upload_url(content_type="image/png")
    assert await api.send_to_s3(upload, images.png(40, 40)) == 200
    status, body, _ = await api.call("POST", f"/images/{upload['image_id']}/complete")
    assert (status, body["error"]["code"]) == (403, "quota_exceeded")
