"""Multipart uploads through the API on moto: create, upload parts, resume, complete, abort.

moto checks no signature, so what S3 itself refuses (a tampered or replayed part URL, a part
longer than signed, a wrong checksum) is proven against LocalStack in test_s3_signatures.py;
here, the service's own checks: the declared parts, their sizes, and the usual verification.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from image_service.domain.models import MIN_PART_BYTES
from image_service.domain.uploads import MAX_PARTS, part_sizes
from tests import images
from tests.integration.conftest import Api, MakeApi

PART = MIN_PART_BYTES


@pytest.fixture(scope="module")
def big_png() -> bytes:
    """About 12.6 MB: three parts of 5 MiB, and more than completion keeps in memory."""
    return images.noisy_png(2048, 2048)


def _b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def _checksums(data: bytes, part_size: int = PART) -> list[str]:
    return [_b64(data[start : start + part_size]) for start in range(0, len(data), part_size)]


async def _multipart(api: Api, data: bytes, *, user: str = "alice", **body: Any) -> dict[str, Any]:
    body = {"content_type": "image/png", "method": "MULTIPART", "size": len(data), **body}
    body.setdefault("part_size", PART)
    return await api.upload_url(user, **body)


async def _complete(api: Api, image_id: str, user: str = "alice") -> tuple[int, Any]:
    status, body, _ = await api.call("POST", f"/images/{image_id}/complete", user=user)
    return status, body


def _open_uploads(api: Api) -> list[str]:
    listing = api.s3.list_multipart_uploads(Bucket=api.settings.bucket)
    return [upload["Key"] for upload in listing.get("Uploads", [])]


async def test_a_multipart_upload_goes_through_the_whole_lifecycle(
    api: Api, big_png: bytes
) -> None:
    upload = await _multipart(
        api, big_png, part_checksums=_checksums(big_png), checksum_sha256=_b64(big_png)
    )
    assert upload["method"] == "MULTIPART"
    assert "upload_url" not in upload
    assert upload["part_size"] == PART
    assert [part["size"] for part in upload["parts"]] == part_sizes(len(big_png), PART)
    first = upload["parts"][0]
    assert first["headers"] == {
        "Content-Length": str(PART),
        "x-amz-checksum-sha256": _b64(big_png[:PART]),
    }
    assert f"uploadId={upload['upload_id']}" in first["url"]
    assert "partNumber=1" in first["url"]

    assert await api.send_parts(upload["parts"], big_png, PART) == [200, 200, 200]
    status, image = await _complete(api, upload["image_id"])
    assert status == 200, image
    assert (status, image["status"], image["size"]) == (200, "processing", len(big_png))
    ready = await api.processed(upload["image_id"])
    assert (ready["status"], ready["width"], ready["height"]) == ("ready", 2048, 2048)
    assert ready["sha256"] == hashlib.sha256(big_png).hexdigest()

    _, download, _ = await api.call("GET", f"/images/{upload['image_id']}/download")
    async with api.http.get(download["download_url"]) as response:
        assert await response.read() == big_png
    # The parts became one object, copied under the served key; nothing is left open.
    assert _open_uploads(api) == []
    assert not any(key.startswith("incoming/") for key in api.object_keys())


async def test_an_interrupted_upload_resumes_from_the_parts_s3_holds(
    api: Api, big_png: bytes
) -> None:
    upload = await _multipart(api, big_png)
    assert await api.send_part(upload["parts"][1], big_png, PART) == 200  # then the client died

    status, progress, headers = await api.call("GET", f"/images/{upload['image_id']}/parts")
    assert status == 200
    assert headers["Cache-Control"] == "no-store"
    assert progress["upload_id"] == upload["upload_id"]
    assert (progress["size"], progress["part_size"]) == (len(big_png), PART)
    assert [(p["part_number"], p["size"]) for p in progress["uploaded"]] == [(2, PART)]
    assert [part["part_number"] for part in progress["parts"]] == [1, 3]

    assert await api.send_parts(progress["parts"], big_png, PART) == [200, 200]
    status, _ = await _complete(api, upload["image_id"])
    assert status == 200
    ready = await api.processed(upload["image_id"])
    assert ready["sha256"] == hashlib.sha256(big_png).hexdigest()


async def test_with_s3_events_the_client_and_the_event_complete_it_once(
    make_api: MakeApi, big_png: bytes
) -> None:
    api = await make_api(s3_event_notifications=True)
    upload = await _multipart(api, big_png)
    assert await api.send_parts(upload["parts"], big_png, PART) == [200, 200, 200]
    # Assembling the parts creates the object, whose event reaches the worker meanwhile.
    status, image = await _complete(api, upload["image_id"])
    assert status == 200
    assert image["status"] in {"processing", "ready"}  # whichever completion won, its result
    ready = await api.processed(upload["image_id"])
    assert (ready["status"], ready["size"]) == ("ready", len(big_png))
    _, usage_page, _ = await api.call("GET", "/images")
    assert [item["image_id"] for item in usage_page["items"]] == [upload["image_id"]]


async def test_completing_before_every_part_arrived_names_the_missing_ones(
    api: Api, big_png: bytes
) -> None:
    upload = await _multipart(api, big_png)
    assert await api.send_part(upload["parts"][0], big_png, PART) == 200
    status, error = await _complete(api, upload["image_id"])
    assert status == 409
    assert error["error"]["code"] == "parts_missing"
    assert error["error"]["details"]["missing"] == [2, 3]
    # Nothing was decided: the upload stays open and can still be finished.
    _, image, _ = await api.call("GET", f"/images/{upload['image_id']}")
    assert image["status"] == "pending"
    assert await api.send_parts(upload["parts"][1:], big_png, PART) == [200, 200]
    assert (await _complete(api, upload["image_id"]))[0] == 200


async def test_a_part_of_the_wrong_length_is_refused_even_where_s3_checks_no_signature(
    api: Api, big_png: bytes
) -> None:
    upload = await _multipart(api, big_png)
    short = dict(upload["parts"][0], size=PART - 1)  # moto takes whatever arrives
    assert await api.send_part(short, big_png, PART) == 200
    assert await api.send_parts(upload["parts"][1:], big_png, PART) == [200, 200]
    status, error = await _complete(api, upload["image_id"])
    assert (status, error["error"]["code"]) == (422, "size_mismatch")
    assert error["error"]["details"]["parts"] == [1]
    assert _open_uploads(api) == []  # the parts were discarded with the upload
    _, image, _ = await api.call("GET", f"/images/{upload['image_id']}")
    assert image["status"] == "rejected"


async def test_a_multipart_image_with_too_many_pixels_is_refused_naming_the_limit(
    api: Api,
) -> None:
    # Plain colour compresses to little: a single-part multipart upload of 56 megapixels.
    data = images.bilevel_png(8000, 7000)
    upload = await _multipart(api, data)
    assert len(upload["parts"]) == 1
    assert await api.send_parts(upload["parts"], data, PART) == [200]
    status, error = await _complete(api, upload["image_id"])
    assert (status, error["error"]["code"]) == (422, "too_many_pixels")
    assert error["error"]["details"]["max_pixels"] == api.settings.max_pixels


async def test_deleting_a_pending_multipart_upload_aborts_it(api: Api, big_png: bytes) -> None:
    upload = await _multipart(api, big_png)
    assert await api.send_part(upload["parts"][0], big_png, PART) == 200
    assert _open_uploads(api) == [f"incoming/alice/{upload['image_id']}"]
    status, _, _ = await api.call("DELETE", f"/images/{upload['image_id']}")
    assert status == 204
    assert _open_uploads(api) == []
    status, _, _ = await api.call("GET", f"/images/{upload['image_id']}/parts")
    assert status == 404


async def test_only_a_pending_multipart_upload_has_parts(api: Api, big_png: bytes) -> None:
    single = await api.upload_url()
    status, error, _ = await api.call("GET", f"/images/{single['image_id']}/parts")
    assert (status, error["error"]["code"]) == (409, "not_multipart")

    upload = await _multipart(api, big_png)
    await api.send_parts(upload["parts"], big_png, PART)
    assert (await _complete(api, upload["image_id"]))[0] == 200
    status, error, _ = await api.call("GET", f"/images/{upload['image_id']}/parts")
    assert (status, error["error"]["code"]) == (409, "upload_completed")

    status, error, _ = await api.call("GET", f"/images/{upload['image_id']}/parts", user="bob")
    assert status == 404  # another user's upload does not exist for them


async def test_a_retried_multipart_request_answers_the_same_upload_with_fresh_urls(
    api: Api, big_png: bytes
) -> None:
    body = {"content_type": "image/png", "method": "MULTIPART", "size": len(big_png)}
    headers = {"Idempotency-Key": "big-scan-1"}
    first = await api.call("POST", "/images/upload", json=body, headers=headers)
    again = await api.call("POST", "/images/upload", json=body, headers=headers)
    assert first[0] == again[0] == 201
    assert first[1]["image_id"] == again[1]["image_id"]
    assert first[1]["upload_id"] == again[1]["upload_id"]
    assert len(again[1]["parts"]) == len(first[1]["parts"]) == 2  # default part size: 8 MiB
    assert again[1]["part_size"] == api.settings.multipart_part_bytes


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"method": "MULTIPART"}, "size_required"),
        ({"method": "MULTIPART", "size": 1024**3 + 1}, "file_too_large"),
        ({"method": "MULTIPART", "size": 10**7, "part_size": PART - 1}, "invalid_part_size"),
        (
            {
                "method": "MULTIPART",
                "size": 12 * 1024**2,
                "part_size": PART,
                "part_checksums": [_b64(b"one")] * 2,
            },
            "part_checksums_mismatch",
        ),
        ({"size": 20 * 1024**2 + 1}, "file_too_large"),  # one PUT: the multipart hint follows
    ],
)
async def test_each_refused_multipart_request(api: Api, body: dict[str, Any], code: str) -> None:
    status, error, _ = await api.call(
        "POST", "/images/upload", json={"content_type": "image/png", **body}
    )
    assert (status, error["error"]["code"]) == (422, code), error
    assert _open_uploads(api) == []  # refused before S3 was asked for anything


async def test_a_larger_maximum_still_bounds_the_number_of_parts(make_api: MakeApi) -> None:
    # Raised to S3's largest copy: 5 MiB parts would be 1,024 of them, over the 1,000 allowed.
    api = await make_api(max_multipart_bytes=5 * 1024**3)
    body = {"content_type": "image/png", "method": "MULTIPART", "size": 5 * 1024**3}
    status, error, _ = await api.call("POST", "/images/upload", json={**body, "part_size": PART})
    assert (status, error["error"]["code"]) == (422, "too_many_parts")
    assert error["error"]["details"] == {
        "parts": 1024,
        "min_part_size": -(-5 * 1024**3 // MAX_PARTS),
    }
    status, upload, _ = await api.call("POST", "/images/upload", json=body)  # 8 MiB parts
    assert status == 201
    assert len(upload["parts"]) == 640


async def test_the_part_checksums_are_validated_by_the_schema(api: Api) -> None:
    body = {"content_type": "image/png", "method": "MULTIPART", "size": 10**7}
    for checksums in (["not base64"], [], ["\ud800"], [_b64(b"x")] * 1001):
        status, error, _ = await api.call(
            "POST", "/images/upload", json={**body, "part_checksums": checksums}
        )
        assert (status, error["error"]["code"]) == (422, "validation_error"), checksums


# -- de-duplication --------------------------------------------------------------------------------


async def test_check_answers_which_digests_the_caller_already_has(api: Api) -> None:
    data = images.jpeg()
    _, status, ready = await api.upload(data)
    assert status == 200
    assert ready["status"] == "ready"
    other = images.png()
    asked = [_b64(data), hashlib.sha256(data).hexdigest().upper(), _b64(other)]
    status, answer, _ = await api.call("POST", "/images/check", json={"checksums_sha256": asked})
    assert status == 200
    assert answer["results"] == [
        {"checksum_sha256": asked[0], "image_id": ready["image_id"]},
        {"checksum_sha256": asked[1], "image_id": ready["image_id"]},
        {"checksum_sha256": asked[2], "image_id": None},
    ]
    # Owner isolation: bob has no such image.
    _, answer, _ = await api.call(
        "POST", "/images/check", user="bob", json={"checksums_sha256": asked[:1]}
    )
    assert answer["results"][0]["image_id"] is None
    # Deleted: no longer owned.
    await api.call("DELETE", f"/images/{ready['image_id']}")
    _, answer, _ = await api.call("POST", "/images/check", json={"checksums_sha256": asked[:1]})
    assert answer["results"][0]["image_id"] is None


async def test_a_check_of_500_digests_reads_a_hundred_keys_per_dynamodb_call(api: Api) -> None:
    data = images.gif()
    _, status, ready = await api.upload(data, content_type="image/gif")
    assert status == 200, ready
    asked = [hashlib.sha256(str(n).encode()).hexdigest() for n in range(499)] + [_b64(data)]
    before = await api.metrics()
    status, answer, _ = await api.call("POST", "/images/check", json={"checksums_sha256": asked})
    after = await api.metrics()
    assert status == 200
    assert [r["image_id"] for r in answer["results"]] == [None] * 499 + [ready["image_id"]]
    key = ("image_service_dynamodb_requests_total", (("operation", "BatchGetItem"),))
    assert after.get(key, 0) - before.get(key, 0) == 5

    status, error, _ = await api.call(
        "POST", "/images/check", json={"checksums_sha256": asked + asked[:1]}
    )
    assert (status, error["error"]["code"]) == (422, "validation_error")


async def test_if_exists_return_answers_the_image_already_there(api: Api) -> None:
    data = images.webp()
    checksum = _b64(data)
    _, _, ready = await api.upload(data, content_type="image/webp", checksum_sha256=checksum)
    body = {"content_type": "image/webp", "checksum_sha256": checksum, "if_exists": "return"}
    status, existing, _ = await api.call("POST", "/images/upload", json=body)
    assert status == 200
    assert (existing["image_id"], existing["status"]) == (ready["image_id"], "ready")
    # Another user's bytes are theirs: bob gets an upload URL.
    status, created, _ = await api.call("POST", "/images/upload", json=body, user="bob")
    assert status == 201
    assert "upload_url" in created
    # Without a checksum there is nothing to look for.
    del body["checksum_sha256"]
    status, error, _ = await api.call("POST", "/images/upload", json=body)
    assert (status, error["error"]["code"]) == (422, "checksum_required")
