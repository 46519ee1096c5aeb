"""The whole lifecycle on an S3-compatible store beyond AWS: SeaweedFS, started by the suite
(bound to 127.0.0.1, checking signatures), with the settings docs/deployment.md gives for it:
path-style addressing and checksums only when required. No S3 events there: clients complete.
DynamoDB and SQS stay on moto.

Then the presigned URLs' abuse cases LocalStack refuses, sent to this store: what it refuses
is asserted, and what it accepts is named (SEAWEEDFS_ACCEPTS), so a change either way shows."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Iterator

import aiohttp
import pytest

from image_service.domain.models import MIN_PART_BYTES
from tests import images
from tests.integration.conftest import Api, MakeApi
from tests.seaweedfs import ACCESS_KEY, SECRET_KEY, seaweedfs

# What docs/deployment.md says to set for SeaweedFS.
STORE_SETTINGS = {"s3_addressing_style": "path", "s3_checksum_mode": "when_required"}


@pytest.fixture(scope="session")
def seaweedfs_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as endpoint:
        yield endpoint


@pytest.fixture
async def store(monkeypatch: pytest.MonkeyPatch, seaweedfs_endpoint: str, make_api: MakeApi) -> Api:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", seaweedfs_endpoint)
    return await make_api(**STORE_SETTINGS)


def _sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


async def _get(api: Api, url: str) -> tuple[int, bytes]:
    async with api.http.get(url) as response:
        return response.status, await response.read()


async def test_the_lifecycle_runs_on_seaweedfs(store: Api) -> None:
    api = store
    # A presigned PUT with the full contract: exact length, checksum, no overwrite.
    data = images.jpeg(640, 480)
    upload = await api.upload_url(size=len(data), checksum_sha256=_sha256(data), tags=["sea"])
    assert await api.send_to_s3(upload, data) == 200
    assert (await api.call("POST", f"/images/{upload['image_id']}/complete"))[0] == 200
    image = await api.processed(upload["image_id"])
    assert image["status"] == "ready"
    assert image["variants"]
    _, download, _ = await api.call("GET", f"/images/{upload['image_id']}/download")
    assert await _get(api, download["download_url"]) == (200, data)
    variant = image["variants"][0]["name"]
    _, small, _ = await api.call(
        "GET", f"/images/{upload['image_id']}/download", params={"variant": variant}
    )
    assert (await _get(api, small["download_url"]))[0] == 200

    # A presigned POST (a browser form).
    png = images.png(300, 200)
    posted = await api.upload_url(method="POST", content_type="image/png", size=len(png))
    assert await api.send_to_s3(posted, png) in {200, 204}
    assert (await api.call("POST", f"/images/{posted['image_id']}/complete"))[0] == 200
    assert (await api.processed(posted["image_id"]))["status"] == "ready"

    # Multipart with per-part checksums, resumed after its first part.
    big = _padded_jpeg(MIN_PART_BYTES + 4096)
    parts = [big[:MIN_PART_BYTES], big[MIN_PART_BYTES:]]
    multipart = await api.upload_url(
        method="MULTIPART",
        size=len(big),
        part_size=MIN_PART_BYTES,
        part_checksums=[_sha256(part) for part in parts],
    )
    first = multipart["parts"][0]
    assert await api.send_part(first, big, MIN_PART_BYTES) == 200
    _, progress, _ = await api.call("GET", f"/images/{multipart['image_id']}/parts")
    assert [p["part_number"] for p in progress["uploaded"]] == [1]
    assert [p["part_number"] for p in progress["parts"]] == [2]
    assert await api.send_parts(progress["parts"], big, MIN_PART_BYTES) == [200]
    status, body, _ = await api.call("POST", f"/images/{multipart['image_id']}/complete")
    assert status == 200, body
    assert (await api.processed(multipart["image_id"]))["status"] == "ready"

    # A rendition, rendered from the store and stored there.
    _, rendition, _ = await api.call(
        "GET", f"/images/{upload['image_id']}/render", params={"w": "256", "format": "webp"}
    )
    assert (await _get(api, rendition["url"]))[0] == 200
    assert any("/r/" in key for key in api.object_keys())

    # The trash, a restore, and the purge of everything.
    assert (await api.call("DELETE", f"/images/{upload['image_id']}"))[0] == 204
    assert (await _get(api, rendition["url"]))[0] == 404
    assert (await api.call("POST", f"/images/{upload['image_id']}/restore"))[0] == 200
    for image_id in (upload["image_id"], posted["image_id"], multipart["image_id"]):
        assert (await api.call("DELETE", f"/images/{image_id}"))[0] == 204
    _, purged, _ = await api.call("DELETE", "/trash")
    assert purged["purged"] == 3
    assert api.object_keys() == []


def _padded_jpeg(size: int) -> bytes:
    """A valid JPEG of at least ``size`` bytes (noise compresses badly)."""
    side = 2400
    while True:
        data = images.noisy("JPEG", side, side)
        if len(data) >= size:
            return data
        side += 400


# -- the presigned URLs' abuse cases, on this store --------------------------------------------

# What this store accepts of what LocalStack (and S3) refuse: named, not hidden.
SEAWEEDFS_ACCEPTS: set[str] = set()


async def _put(api: Api, url: str, data: bytes, headers: dict[str, str]) -> int:
    async with api.http.put(url, data=data, headers=headers) as response:
        return response.status


async def _abuse_outcomes(api: Api) -> dict[str, int]:
    data = images.jpeg(64, 48)
    signed = await api.upload_url(size=len(data), checksum_sha256=_sha256(data))
    url, headers = (
        signed["upload_url"],
        {k: v for k, v in signed["headers"].items() if k != "Content-Length"},
    )
    other = await api.upload_url(size=len(data))
    outcomes = {
        "tampered signature": await _put(
            api, url[:-4] + ("0000" if not url.endswith("0000") else "1111"), data, headers
        ),
        "another key": await _put(
            api, url.replace(signed["image_id"], other["image_id"]), data, headers
        ),
        "another content type": await _put(
            api, url, data, {**headers, "Content-Type": "text/html"}
        ),
        "no content type": await _put(
            api, url, data, {k: v for k, v in headers.items() if k != "Content-Type"}
        ),
        "another length": await _put(api, url, data + b"\0", headers),
        "other bytes than the checksum": await _put(
            api, url, data[:-1] + bytes([data[-1] ^ 1]), headers
        ),
    }
    assert await _put(api, url, data, headers) == 200  # the URL as issued works
    outcomes["a second upload to the key"] = await _put(api, url, data, headers)
    posted = await api.upload_url(method="POST", content_type="image/jpeg", size=len(data))
    form = aiohttp.FormData()
    for name, value in posted["fields"].items():
        form.add_field(name, value)
    form.add_field("file", data + b"extra", filename="x", content_type="image/jpeg")
    async with api.http.post(posted["upload_url"], data=form) as response:
        outcomes["a POST over its length range"] = response.status
    return outcomes


async def test_presigned_url_abuse_on_seaweedfs(store: Api) -> None:
    outcomes = await _abuse_outcomes(store)
    accepted = {case for case, status in outcomes.items() if status < 400}
    print(f"\nSeaweedFS accepts: {sorted(accepted) or 'none'}; all outcomes: {outcomes}")
    assert accepted == SEAWEEDFS_ACCEPTS, outcomes


async def test_an_expired_url_is_refused_on_seaweedfs(
    make_api: MakeApi, seaweedfs_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A test about expiry: URLs that live one second.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", seaweedfs_endpoint)
    api = await make_api(upload_url_expiry=1, **STORE_SETTINGS)
    data = images.jpeg(64, 48)
    upload = await api.upload_url(size=len(data))
    await asyncio.sleep(2.1)  # the expiry is wall-clock time on the store
    assert await api.send_to_s3(upload, data) == 403
