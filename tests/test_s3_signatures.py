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

from tests import images
from tests.conftest import Api, MakeApi
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
    status, _, _ = await api.call("DELETE", f"/images/{upload['image_id']}")
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
