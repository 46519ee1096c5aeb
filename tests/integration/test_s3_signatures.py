"""The presigned URLs against an S3 that checks signatures (LocalStack, host mode).

moto accepts any presigned request; here every claim the service makes about its URLs is proven
with real HTTP uploads, and each refused request is shown to have stored nothing.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import Any

import aiohttp
import pytest
from botocore.exceptions import ClientError

from image_service.domain.models import MIN_PART_BYTES
from tests import images
from tests.integration.conftest import Api, MakeApi
from tests.localstack import ACCESS_KEY, SECRET_KEY

EXPIRY_SECONDS = 1


@pytest.fixture
def on_localstack(monkeypatch: pytest.MonkeyPatch, localstack_endpoint: str) -> None:
    """S3 is LocalStack (signatures checked, secret "test"); DynamoDB stays on moto."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", localstack_endpoint)


@pytest.fixture
async def api(on_localstack: None, make_api: MakeApi) -> Api:
    return await make_api()


def _stored(api: Api, key: str) -> bytes | None:
    try:
        return api.s3.get_object(Bucket=api.settings.bucket, Key=key)["Body"].read()  # type: ignore[no-any-return]
    except ClientError as exc:
        if exc.response["Error"]["Code"] in {"NoSuchKey", "404"}:
            return None
        raise


def _incoming(api: Api, upload: dict[str, Any], user: str = "alice") -> str:
    return f"incoming/{user}/{upload['image_id']}"


async def _put(api: Api, url: str, data: bytes, headers: dict[str, str], **kwargs: Any) -> int:
    async with api.http.put(url, data=data, headers=headers, **kwargs) as response:
        return response.status


async def test_a_signed_upload_goes_through_the_whole_lifecycle(api: Api) -> None:
    data = images.jpeg()
    checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
    upload = await api.upload_url(size=len(data), checksum_sha256=checksum)
    assert await api.send_to_s3(upload, data) == 200
    status, verified, _ = await api.call("POST", f"/images/{upload['image_id']}/complete")
    assert (status, verified["status"]) == (200, "processing")
    assert (await api.processed(upload["image_id"]))["status"] == "ready"
    status, download, _ = await api.call("GET", f"/images/{upload['image_id']}/download")
    async with api.http.get(download["download_url"]) as response:
        assert response.status == 200
        assert await response.read() == data
    status, _, _ = await api.call(
        "DELETE", f"/images/{upload['image_id']}", params={"permanent": "true"}
    )
    assert status == 204
    assert api.object_keys() == []


async def test_the_original_curl_flow_passes_signature_checks(api: Api) -> None:
    upload = await api.upload_url(content_type="image/png")
    assert await _put(api, upload["upload_url"], images.png(), {"Content-Type": "image/png"}) == 200
    status, verified, _ = await api.call("POST", f"/images/{upload['image_id']}/complete")
    assert (status, verified["status"]) == (200, "processing")
    assert (await api.processed(upload["image_id"]))["status"] == "ready"


async def test_a_post_form_upload_passes(api: Api) -> None:
    upload = await api.upload_url(content_type="image/png", method="POST")
    assert await api.send_to_s3(upload, images.png()) == 204
    status, verified, _ = await api.call("POST", f"/images/{upload['image_id']}/complete")
    assert (status, verified["status"]) == (200, "processing")
    assert (await api.processed(upload["image_id"]))["status"] == "ready"


async def test_expired_put_and_get_urls_are_refused(on_localstack: None, make_api: MakeApi) -> None:
    api = await make_api()
    data = images.jpeg()
    ready_upload, status, _ = await api.upload(data)
    assert status == 200
    # The same bucket and table behind an app that signs one-second URLs.
    short = await make_api(
        provisioned=False,
        bucket=api.settings.bucket,
        table=api.settings.table,
        upload_url_expiry=EXPIRY_SECONDS,
        download_url_expiry=EXPIRY_SECONDS,
    )
    upload = await short.upload_url()
    status, download, _ = await short.call("GET", f"/images/{ready_upload['image_id']}/download")
    assert status == 200
    # X-Amz-Date has whole seconds, so a 1 s URL is dead at most 2 s after signing.
    await asyncio.sleep(EXPIRY_SECONDS + 1.5)
    assert await api.send_to_s3(upload, data) == 403
    assert _stored(api, _incoming(api, upload)) is None
    async with api.http.get(download["download_url"]) as response:
        assert response.status == 403
        assert data not in await response.read()


async def test_a_tampered_signature_is_refused(api: Api) -> None:
    upload = await api.upload_url()
    url = upload["upload_url"]
    flipped = url[:-1] + ("0" if url[-1] != "0" else "1")
    assert await _put(api, flipped, images.jpeg(), upload["headers"]) == 403
    assert _stored(api, _incoming(api, upload)) is None


async def test_a_url_replayed_for_another_key_is_refused(api: Api) -> None:
    mine = await api.upload_url(user="alice")
    victim = await api.upload_url(user="bob")
    retargeted = mine["upload_url"].replace(
        _incoming(api, mine, "alice"), _incoming(api, victim, "bob")
    )
    assert retargeted != mine["upload_url"]
    assert await _put(api, retargeted, images.jpeg(), mine["headers"]) == 403
    assert _stored(api, _incoming(api, victim, "bob")) is None


async def test_a_wrong_content_type_is_refused(api: Api) -> None:
    upload = await api.upload_url(content_type="image/jpeg")
    assert await _put(api, upload["upload_url"], images.HTML, {"Content-Type": "text/html"}) == 403
    assert _stored(api, _incoming(api, upload)) is None


async def test_a_missing_content_type_is_refused(api: Api) -> None:
    upload = await api.upload_url(content_type="image/jpeg")
    status = await _put(
        api, upload["upload_url"], images.jpeg(), {}, skip_auto_headers=["Content-Type"]
    )
    assert status == 403
    assert _stored(api, _incoming(api, upload)) is None


async def test_a_length_other_than_the_signed_size_is_refused(api: Api) -> None:
    data = images.jpeg()
    upload = await api.upload_url(size=len(data))
    assert await api.send_to_s3(upload, data + b"\x00" * 100) == 403
    assert _stored(api, _incoming(api, upload)) is None


async def test_a_post_over_its_length_range_is_refused(
    make_api: MakeApi, on_localstack: None
) -> None:
    api = await make_api(max_upload_bytes=2000)
    upload = await api.upload_url(content_type="image/png", method="POST")
    status = await api.send_to_s3(upload, images.noisy_png())
    assert 400 <= status < 500
    assert _stored(api, _incoming(api, upload)) is None


async def test_a_second_upload_to_the_same_key_is_refused(api: Api) -> None:
    first = images.jpeg()
    upload = await api.upload_url(size=len(first))
    assert await api.send_to_s3(upload, first) == 200
    second = images.encode("JPEG", color=(0, 0, 255))
    assert len(second) == len(first), "same length, so only If-None-Match can refuse it"
    assert await api.send_to_s3(upload, second) == 412
    assert _stored(api, _incoming(api, upload)) == first


async def test_a_checksum_signed_put_with_other_bytes_is_refused(api: Api) -> None:
    data = images.jpeg()
    checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
    upload = await api.upload_url(checksum_sha256=checksum)
    other = images.encode("JPEG", color=(0, 255, 0))
    status = await api.send_to_s3(upload, other)
    assert 400 <= status < 500
    assert _stored(api, _incoming(api, upload)) is None


async def test_the_http_session_sends_what_it_is_told(api: Api) -> None:
    """Guards the tests above: aiohttp must not add or rewrite a signed header on its own."""
    upload = await api.upload_url(content_type="image/png")
    async with (
        aiohttp.ClientSession() as http,
        http.put(upload["upload_url"], data=images.png(), headers=upload["headers"]) as response,
    ):
        assert response.status == 200


# -- multipart: every part URL is as strict as a single PUT ----------------------------------------

PART = MIN_PART_BYTES


@pytest.fixture(scope="module")
def big_png() -> bytes:
    return images.noisy_png(2048, 2048)  # three parts of 5 MiB


def _sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


async def _multipart(api: Api, data: bytes, user: str = "alice") -> dict[str, Any]:
    checksums = [_sha256(data[i : i + PART]) for i in range(0, len(data), PART)]
    return await api.upload_url(
        user,
        content_type="image/png",
        method="MULTIPART",
        size=len(data),
        part_size=PART,
        part_checksums=checksums,
    )


def _parts_held(api: Api, upload: dict[str, Any], user: str = "alice") -> list[int]:
    listing = api.s3.list_parts(
        Bucket=api.settings.bucket, Key=_incoming(api, upload, user), UploadId=upload["upload_id"]
    )
    return [part["PartNumber"] for part in listing.get("Parts", [])]


async def test_a_tampered_part_url_is_refused(api: Api, big_png: bytes) -> None:
    upload = await _multipart(api, big_png)
    first = upload["parts"][0]
    moved = dict(first, url=first["url"].replace("partNumber=1", "partNumber=2"))
    flipped = first["url"][:-1] + ("0" if first["url"][-1] != "0" else "1")
    assert await api.send_part(moved, big_png, PART) == 403
    assert await api.send_part(dict(first, url=flipped), big_png, PART) == 403
    assert _parts_held(api, upload) == []


async def test_a_part_with_other_bytes_than_its_checksum_is_refused(
    api: Api, big_png: bytes
) -> None:
    upload = await _multipart(api, big_png)
    corrupt = bytearray(big_png)
    corrupt[100] ^= 0xFF  # same length, one bit pattern changed in part 1
    assert await api.send_part(upload["parts"][0], bytes(corrupt), PART) == 400  # BadDigest
    assert _parts_held(api, upload) == []


async def test_a_part_longer_than_signed_is_refused(api: Api, big_png: bytes) -> None:
    upload = await _multipart(api, big_png)
    last = upload["parts"][-1]
    longer = dict(last, size=last["size"] + 10)
    assert await api.send_part(longer, big_png + b"\x00" * 10, PART) == 403
    assert _parts_held(api, upload) == []


async def test_a_part_url_replayed_for_another_upload_is_refused(api: Api, big_png: bytes) -> None:
    mine = await _multipart(api, big_png)
    other = await _multipart(api, big_png)
    part = mine["parts"][0]
    replayed = (
        part["url"]
        .replace(mine["upload_id"], other["upload_id"])
        .replace(mine["image_id"], other["image_id"])
    )
    assert await api.send_part(dict(part, url=replayed), big_png, PART) == 403
    assert _parts_held(api, other) == []


async def test_a_resumed_multipart_upload_completes_byte_identical(
    api: Api, big_png: bytes
) -> None:
    upload = await _multipart(api, big_png)
    assert await api.send_part(upload["parts"][0], big_png, PART) == 200
    # The client lost its state: the API says what S3 holds and signs the rest afresh.
    status, progress, _ = await api.call("GET", f"/images/{upload['image_id']}/parts")
    assert status == 200
    assert [part["part_number"] for part in progress["uploaded"]] == [1]
    assert progress["uploaded"][0]["checksum_sha256"] == _sha256(big_png[:PART])
    assert await api.send_parts(progress["parts"], big_png, PART) == [200, 200]
    status, verified, _ = await api.call("POST", f"/images/{upload['image_id']}/complete")
    assert (status, verified["status"]) == (200, "processing")
    assert (await api.processed(upload["image_id"]))["status"] == "ready"
    _, download, _ = await api.call("GET", f"/images/{upload['image_id']}/download")
    async with api.http.get(download["download_url"]) as response:
        assert response.status == 200
        assert await response.read() == big_png
