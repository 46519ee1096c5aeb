"""Per-user quotas: exact at completion (one transaction with the image), and checked at
upload-URL time against a briefly cached usage figure."""

from __future__ import annotations

import asyncio

from tests import images
from tests.integration.conftest import MakeApi

# The table's behaviour, under both transports (IMAGE_SERVICE_AWS_TRANSPORT): every test here
# that makes an API runs once on each.
BOTH_TRANSPORTS = True


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


async def test_the_trash_counts_until_it_is_emptied(make_api: MakeApi) -> None:
    api = await make_api(max_images_per_user=1, usage_cache_seconds=0)
    upload, _, _ = await api.upload(images.png(), content_type="image/png")
    status, _, _ = await api.call("POST", "/images/upload", json={"content_type": "image/png"})
    assert status == 403
    assert (await api.call("DELETE", f"/images/{upload['image_id']}"))[0] == 204
    status, _, _ = await api.call("POST", "/images/upload", json={"content_type": "image/png"})
    assert status == 403, "a trashed image still counts"
    status, emptied, _ = await api.call("DELETE", "/trash")
    assert (status, emptied) == (200, {"purged": 1})
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


async def test_completions_racing_s3_events_answer_each_outcome_with_its_own_status(
    make_api: MakeApi,
) -> None:
    """Five uploads of one user with room for three, each completed by the client while S3's
    event completes it too (through the worker): whichever completion decides, the client hears
    the outcome itself, 200 with the image or 403 quota_exceeded; never a 200 carrying a
    rejected image, nor another code for the same cause."""
    api = await make_api(max_images_per_user=3, s3_event_notifications=True)
    for round_number in range(5):
        user = f"racer-{round_number}"
        uploads = [await api.upload_url(user, content_type="image/png") for _ in range(5)]

        async def send_and_complete(
            upload: dict[str, object], user: str = user
        ) -> tuple[int, object]:
            assert await api.send_to_s3(upload, images.png()) == 200
            status, body, _ = await api.call(
                "POST", f"/images/{upload['image_id']}/complete", user=user
            )
            return status, body

        answers = await asyncio.gather(*(send_and_complete(upload) for upload in uploads))
        outcomes = sorted(
            (status, body["status"] if status == 200 else body["error"]["code"])  # type: ignore[index]
            for status, body in answers
        )
        assert [status for status, _ in outcomes] == [200, 200, 200, 403, 403], outcomes
        assert {outcome for status, outcome in outcomes if status == 403} == {"quota_exceeded"}
        assert {outcome for status, outcome in outcomes if status == 200} <= {
            "processing",
            "ready",
        }


async def test_completing_after_s3_events_decided_answers_the_same_refusal(
    make_api: MakeApi,
) -> None:
    """S3's events complete all five uploads first (three fit, two are refused for the quota);
    the client's completions then answer exactly what completing first would have."""
    api = await make_api(max_images_per_user=3, s3_event_notifications=True)
    uploads = [await api.upload_url(content_type="image/png") for _ in range(5)]
    for upload in uploads:
        assert await api.send_to_s3(upload, images.png()) == 200
    decided = [await api.processed(upload["image_id"]) for upload in uploads]
    assert sorted(image["status"] for image in decided) == ["ready"] * 3 + ["rejected"] * 2

    for upload, image in zip(uploads, decided, strict=True):
        status, body, _ = await api.call("POST", f"/images/{upload['image_id']}/complete")
        if image["status"] == "ready":
            assert (status, body["status"]) == (200, "ready")
        else:
            assert (status, body["error"]["code"]) == (403, "quota_exceeded")
