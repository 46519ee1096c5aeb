"""The whole client flow with real image bytes, through the API and straight to S3."""

from __future__ import annotations

import base64
import hashlib
from io import BytesIO

import pytest
from PIL import Image

from image_service.programs.embedded import free_port
from tests import images
from tests.integration.conftest import Api, MakeApi

FORMATS = [
    ("image/jpeg", images.jpeg(64, 48), 64, 48),
    ("image/png", images.png(30, 20), 30, 20),
    ("image/gif", images.gif(16, 12), 16, 12),
    ("image/webp", images.webp(40, 30), 40, 30),
    ("image/heic", images.heic(64, 48), 64, 48),
    ("image/avif", images.avif(40, 30), 40, 30),
]


@pytest.mark.parametrize(("content_type", "data", "width", "height"), FORMATS)
async def test_full_lifecycle(
    api: Api, content_type: str, data: bytes, width: int, height: int
) -> None:
    upload = await api.upload_url(
        content_type=content_type,
        tags=["Holiday", "holiday", "Beach"],
        description="Sunset",
        filename="sunset photo.bin",
    )
    image_id = upload["image_id"]
    assert upload["method"] == "PUT"
    assert upload["headers"] == {"Content-Type": content_type}
    assert upload["fields"] == {}

    status, pending, _ = await api.call("GET", f"/images/{image_id}")
    assert status == 200
    assert pending["status"] == "pending"
    assert pending["tags"] == ["holiday", "beach"]
    assert pending["size"] is None

    assert await api.send_to_s3(upload, data) == 200
    status, verified, _ = await api.call("POST", f"/images/{image_id}/complete")
    assert status == 200, verified
    assert verified["status"] == "processing"
    status, body, _ = await api.call("GET", f"/images/{image_id}/download")
    assert (status, body["error"]["code"]) == (409, "image_not_ready"), (
        "not served before processed"
    )
    ready = await api.processed(image_id)
    assert ready["status"] == "ready"
    assert (ready["size"], ready["width"], ready["height"]) == (len(data), width, height)
    assert ready["sha256"] == hashlib.sha256(data).hexdigest()
    assert ready["placeholder"].startswith("#")
    assert 5 <= len(base64.b64decode(ready["thumbhash"])) <= 25
    variants = {(v["name"], v["format"]): v for v in ready["variants"]}
    assert set(variants) == {(n, f) for n in ("thumb", "medium") for f in ("jpeg", "webp")}
    assert all((v["width"], v["height"]) == (width, height) for v in variants.values())
    prefix = f"images/alice/{image_id}/"
    assert api.object_keys() == sorted(
        [prefix + "original"]
        + [prefix + n + e for n in ("medium", "thumb") for e in (".jpg", ".webp")]
    ), "the upload key is emptied once the image is verified"

    status, patched, _ = await api.call(
        "PATCH", f"/images/{image_id}", json={"tags": ["Sea"], "description": "Dusk"}
    )
    assert status == 200
    assert (patched["tags"], patched["description"]) == (["sea"], "Dusk")
    assert patched["updated_at"] >= ready["updated_at"]

    status, page, _ = await api.call("GET", "/images")
    assert status == 200
    assert [item["image_id"] for item in page["items"]] == [image_id]
    assert page["next_cursor"] is None

    status, download, headers = await api.call("GET", f"/images/{image_id}/download")
    assert status == 200
    assert headers["Cache-Control"] == "no-store"
    async with api.http.get(download["download_url"]) as response:
        assert response.status == 200
        assert await response.read() == data
        assert response.headers["Content-Type"] == content_type
        extension = {"image/jpeg": "jpg"}.get(content_type, content_type.split("/")[1])
        assert f'filename="sunset_photo.{extension}"' in response.headers["Content-Disposition"]

    status, thumb, _ = await api.call(
        "GET", f"/images/{image_id}/download", params={"variant": "thumb", "format": "webp"}
    )
    assert status == 200
    async with api.http.get(thumb["download_url"]) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "image/webp"
        assert 'filename="sunset_photo-thumb.webp"' in response.headers["Content-Disposition"]
    status, body, _ = await api.call(
        "GET", f"/images/{image_id}/download", params={"variant": "huge"}
    )
    assert (status, body["error"]["code"]) == (404, "image_not_found")

    # Deleted into the trash: kept, not served, listed only as the trash; and back again.
    kept = api.object_keys()
    status, _, _ = await api.call("DELETE", f"/images/{image_id}")
    assert status == 204
    assert api.object_keys() == kept
    status, body, _ = await api.call("GET", f"/images/{image_id}/download")
    assert (status, body["error"]["code"]) == (409, "image_not_ready")
    assert (await api.call("GET", "/images"))[1]["items"] == []
    status, trash, _ = await api.call("GET", "/images", params={"status": "trashed"})
    assert [(i["image_id"], i["status"]) for i in trash["items"]] == [(image_id, "trashed")]
    status, restored, _ = await api.call("POST", f"/images/{image_id}/restore")
    assert (status, restored["status"]) == (200, "ready")
    assert [i["image_id"] for i in (await api.call("GET", "/images"))[1]["items"]] == [image_id]

    status, _, _ = await api.call("DELETE", f"/images/{image_id}", params={"permanent": "true"})
    assert status == 204
    assert api.object_keys() == [], "the original and every variant are gone"
    status, body, _ = await api.call("GET", f"/images/{image_id}")
    assert (status, body["error"]["code"]) == (404, "image_not_found")
    status, body, _ = await api.call("DELETE", f"/images/{image_id}")
    assert (status, body["error"]["code"]) == (404, "image_not_found")


async def test_original_readme_flow_works_as_written(api: Api) -> None:
    """POST with the original body, then `curl -X PUT url -H "Content-Type: image/jpeg"`."""
    data = images.jpeg()
    upload = await api.upload_url(
        user="user123",
        user_id="user123",
        content_type="image/jpeg",
        tags=["profile", "test"],
        description="Sample image upload",
    )
    async with api.http.put(
        upload["upload_url"], data=data, headers={"Content-Type": "image/jpeg"}
    ) as response:
        assert response.status == 200
    status, verified, _ = await api.call(
        "POST", f"/images/{upload['image_id']}/complete", user="user123"
    )
    assert (status, verified["status"]) == (200, "processing")
    assert (await api.processed(upload["image_id"], user="user123"))["status"] == "ready"


async def test_post_form_upload(api: Api) -> None:
    data = images.png()
    upload = await api.upload_url(content_type="image/png", method="POST")
    assert upload["method"] == "POST"
    assert upload["headers"] == {}
    assert upload["fields"]["Content-Type"] == "image/png"
    assert await api.send_to_s3(upload, data) == 204
    status, _, _ = await api.call("POST", f"/images/{upload['image_id']}/complete")
    assert status == 200
    ready = await api.processed(upload["image_id"])
    assert (ready["status"], ready["size"]) == ("ready", len(data))


async def test_declared_size_and_checksum_are_signed_and_verified(api: Api) -> None:
    data = images.jpeg()
    checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
    upload = await api.upload_url(size=len(data), checksum_sha256=checksum)
    assert upload["headers"] == {
        "Content-Type": "image/jpeg",
        "Content-Length": str(len(data)),
        "x-amz-checksum-sha256": checksum,
        "If-None-Match": "*",
    }
    assert await api.send_to_s3(upload, data) == 200
    status, _, _ = await api.call("POST", f"/images/{upload['image_id']}/complete")
    assert status == 200
    ready = await api.processed(upload["image_id"])
    assert ready["sha256"] == hashlib.sha256(data).hexdigest()


async def test_completing_twice_returns_the_image_unchanged(api: Api) -> None:
    upload, status, first = await api.upload(images.jpeg())
    assert status == 200
    status, second, _ = await api.call("POST", f"/images/{upload['image_id']}/complete")
    assert status == 200
    assert second == first


async def test_a_reupload_after_completion_cannot_replace_the_verified_image(api: Api) -> None:
    """Without a declared size the PUT carries no If-None-Match (the original flow), so the
    guarantee comes from completion moving the verified bytes out of the upload key."""
    data = images.jpeg()
    upload, status, _ = await api.upload(data)
    assert status == 200
    assert await api.send_to_s3(upload, images.HTML, **{"Content-Type": "image/jpeg"}) == 200
    status, download, _ = await api.call("GET", f"/images/{upload['image_id']}/download")
    async with api.http.get(download["download_url"]) as response:
        assert await response.read() == data


async def test_download_redirect(api: Api) -> None:
    upload, _, _ = await api.upload(images.jpeg())
    status, _, headers = await api.call(
        "GET", f"/images/{upload['image_id']}/download?redirect=true", allow_redirects=False
    )
    assert status == 302
    assert "X-Amz-Signature=" in headers["Location"]
    assert headers["Cache-Control"] == "no-store"


async def test_admin_acts_for_another_user(api: Api) -> None:
    status, created, _ = await api.call(
        "POST",
        "/images/upload",
        user="root",
        admin=True,
        json={"content_type": "image/png", "user_id": "bob"},
    )
    assert status == 201
    image_id = created["image_id"]
    assert created["upload_url"].split("?")[0].endswith(f"/incoming/bob/{image_id}")
    status, record, _ = await api.call("GET", f"/images/{image_id}", user="bob")
    assert (status, record["user_id"]) == (200, "bob")
    status, page, _ = await api.call("GET", "/images?user_id=bob", user="root", admin=True)
    assert [item["image_id"] for item in page["items"]] == [image_id]
    status, record, _ = await api.call(
        "GET", f"/images/{image_id}?user_id=bob", user="root", admin=True
    )
    assert status == 200
    status, _, _ = await api.call(
        "DELETE", f"/images/{image_id}?user_id=bob", user="root", admin=True
    )
    assert status == 204


async def test_an_interrupted_delete_is_finished_by_a_retry(make_api: MakeApi) -> None:
    """S3 fails mid-delete (its endpoint unreachable): the image is left `deleting`, never
    served again, and the next DELETE removes every object and the record."""
    healthy = await make_api()
    upload, _, ready = await healthy.upload(images.jpeg())
    assert ready["status"] == "ready"
    image_id = upload["image_id"]
    broken = await make_api(
        provisioned=False,
        bucket=healthy.settings.bucket,
        table=healthy.settings.table,
        environment={"AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{free_port()}"},
    )
    status, body, _ = await broken.call(
        "DELETE", f"/images/{image_id}", params={"permanent": "true"}
    )
    assert (status, body["error"]["code"]) == (503, "backend_unavailable")

    status, record, _ = await healthy.call("GET", f"/images/{image_id}")
    assert (status, record["status"]) == (200, "deleting")
    status, body, _ = await healthy.call("GET", f"/images/{image_id}/download")
    assert (status, body["error"]["code"]) == (409, "image_not_ready")
    assert healthy.object_keys(), "the objects are still there: nothing points at nothing yet"

    status, _, _ = await healthy.call("DELETE", f"/images/{image_id}")  # a deleting image: on
    assert status == 204
    assert healthy.object_keys() == []
    status, _, _ = await healthy.call("GET", f"/images/{image_id}")
    assert status == 404


async def test_a_heic_original_keeps_its_gps_and_nothing_served_from_it_has_any(api: Api) -> None:
    """What docs/operations.md says of originals whose GPS cannot be removed losslessly: the
    original is kept byte for byte for its owner; no variant or rendition carries GPS."""
    exif = Image.Exif()
    exif.get_ifd(0x8825)[2] = (48.0, 51.0, 24.0)  # GPSLatitude
    buffer = BytesIO()
    Image.new("RGB", (640, 480), (10, 120, 200)).save(buffer, "HEIF", exif=exif.tobytes())
    data = buffer.getvalue()
    upload, status, image = await api.upload(data, content_type="image/heic")
    assert (status, image["status"]) == (200, "ready")
    image_id = upload["image_id"]

    _, download, _ = await api.call("GET", f"/images/{image_id}/download")
    async with api.http.get(download["download_url"]) as response:
        assert await response.read() == data  # the original, GPS and all
    for query in ("variant=thumb&format=jpeg", "variant=thumb&format=webp"):
        _, variant, _ = await api.call("GET", f"/images/{image_id}/download?{query}")
        async with api.http.get(variant["download_url"]) as response:
            with Image.open(BytesIO(await response.read())) as decoded:
                assert not decoded.getexif(), query
    _, rendition, _ = await api.call("GET", f"/images/{image_id}/render?w=320&format=jpeg")
    async with api.http.get(rendition["url"]) as response:
        with Image.open(BytesIO(await response.read())) as decoded:
            assert not decoded.getexif()


async def test_variants_can_be_avif(make_api: MakeApi) -> None:
    """A test about IMAGE_SERVICE_VARIANT_FORMATS: avif among them."""
    api = await make_api(variant_formats=("jpeg", "avif"))
    upload, status, image = await api.upload(
        images.transparent_png(640, 480), content_type="image/png"
    )
    assert (status, image["status"]) == (200, "ready")
    formats = {(variant["name"], variant["format"]) for variant in image["variants"]}
    assert formats == {(name, fmt) for name in ("thumb", "medium") for fmt in ("jpeg", "avif")}
    _, download, _ = await api.call(
        "GET", f"/images/{upload['image_id']}/download?variant=thumb&format=avif"
    )
    async with api.http.get(download["download_url"]) as response:
        assert response.headers["Content-Type"] == "image/avif"
        with Image.open(BytesIO(await response.read())) as thumb:
            assert (thumb.format, thumb.mode, thumb.size) == ("AVIF", "RGBA", (256, 192))
