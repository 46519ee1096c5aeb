"""Every rejection path: a clear JSON error, the right status, and nothing stored or lost."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from tests import images
from tests.integration.conftest import Api, MakeApi

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


async def _assert_nothing_stored(api: Api, user: str = "alice") -> None:
    status, page, _ = await api.call("GET", "/images", user=user)
    assert (status, page["items"]) == (200, [])
    assert api.object_keys() == []


# -- upload URL requests ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        pytest.param({"content_type": "text/html"}, "unsupported_content_type", None, id="type"),
        pytest.param({"content_type": "image/svg+xml"}, "unsupported_content_type", None, id="svg"),
        pytest.param({}, "validation_error", "content_type", id="no-type"),
        pytest.param(
            {"content_type": "image/png", "size": 0}, "validation_error", "size", id="size-0"
        ),
        pytest.param(
            {"content_type": "image/png", "size": "12"}, "validation_error", "size", id="size-str"
        ),
        pytest.param(
            {"content_type": "image/png", "size": 20 * 1024 * 1024 + 1},
            "file_too_large",
            None,
            id="too-large",
        ),
        pytest.param(
            {"content_type": "image/png", "bogus": 1},
            "validation_error",
            "bogus",
            id="unknown-field",
        ),
        pytest.param(
            {"content_type": "image/png", "tags": [f"t{i}" for i in range(21)]},
            "validation_error",
            "tags",
            id="too-many-tags",
        ),
        pytest.param(
            {"content_type": "image/png", "tags": ["x" * 65]},
            "validation_error",
            "tags",
            id="long-tag",
        ),
        pytest.param(
            {"content_type": "image/png", "tags": [""]}, "validation_error", "tags", id="empty-tag"
        ),
        pytest.param(
            {"content_type": "image/png", "tags": ["a\x00b"]},
            "validation_error",
            "tags",
            id="ctrl-tag",
        ),
        pytest.param(
            {"content_type": "image/png", "tags": "cat"},
            "validation_error",
            "tags",
            id="tags-not-list",
        ),
        pytest.param(
            {"content_type": "image/png", "description": "d" * 2001},
            "validation_error",
            "description",
            id="long-desc",
        ),
        pytest.param(
            {"content_type": "image/png", "description": "bell\x07"},
            "validation_error",
            "description",
            id="ctrl-desc",
        ),
        pytest.param(
            {"content_type": "image/png", "method": "GET"},
            "validation_error",
            "method",
            id="method",
        ),
        pytest.param(
            {"content_type": "image/png", "checksum_sha256": "not-base64"},
            "validation_error",
            "checksum_sha256",
            id="checksum",
        ),
        pytest.param(
            {"content_type": "image/png", "user_id": ""},
            "validation_error",
            "user_id",
            id="empty-user",
        ),
    ],
)
async def test_bad_upload_requests_are_refused(
    api: Api, body: dict[str, Any], code: str, field: str | None
) -> None:
    status, payload, _ = await api.call("POST", "/images/upload", json=body)
    assert status == 422
    assert payload["error"]["code"] == code
    if field is not None:
        assert field in payload["error"]["details"]["fields"]
    await _assert_nothing_stored(api)


async def test_invalid_json_is_refused(api: Api) -> None:
    status, payload, _ = await api.call(
        "POST", "/images/upload", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert (status, payload["error"]["code"]) == (422, "invalid_json")
    await _assert_nothing_stored(api)


async def test_oversized_body_is_413_json(api: Api) -> None:
    body = {
        "content_type": "image/png",
        "description": "x" * (api.settings.max_json_body_bytes + 1),
    }
    status, payload, _ = await api.call("POST", "/images/upload", json=body)
    assert (status, payload["error"]["code"]) == (413, "payload_too_large")
    await _assert_nothing_stored(api)


async def test_content_types_follow_the_configured_allowlist(make_api: MakeApi) -> None:
    api = await make_api(allowed_content_types=("image/png",))
    status, payload, _ = await api.call(
        "POST", "/images/upload", json={"content_type": "image/jpeg"}
    )
    assert (status, payload["error"]["code"]) == (422, "unsupported_content_type")
    assert payload["error"]["details"]["allowed"] == ["image/png"]


# -- the router and the envelope -------------------------------------------------------------------


async def test_unknown_route_is_a_json_404(api: Api) -> None:
    status, payload, _ = await api.call("GET", "/nowhere")
    assert (status, payload["error"]["code"]) == (404, "not_found")


async def test_malformed_image_id_is_a_json_404(api: Api) -> None:
    status, payload, _ = await api.call("GET", "/images/not-a-uuid")
    assert (status, payload["error"]["code"]) == (404, "not_found")


async def test_wrong_method_is_a_json_405_with_allow(api: Api) -> None:
    status, payload, headers = await api.call("PUT", "/images/upload")
    assert (status, payload["error"]["code"]) == (405, "method_not_allowed")
    assert "POST" in headers["Allow"]


async def test_every_response_has_nosniff_and_a_request_id(api: Api) -> None:
    status, _, headers = await api.call("GET", "/images", headers={"X-Request-ID": "abc-123"})
    assert status == 200
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Request-ID"] == "abc-123"


# -- edits ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "nothing_to_update"),
        ({"tags": ["ok"], "owner": "bob"}, "validation_error"),
        ({"description": "x" * 2001}, "validation_error"),
        ({"tags": ["x" * 65]}, "validation_error"),
    ],
)
async def test_bad_patches_change_nothing(api: Api, body: dict[str, Any], code: str) -> None:
    upload = await api.upload_url(tags=["keep"], description="keep")
    status, payload, _ = await api.call("PATCH", f"/images/{upload['image_id']}", json=body)
    assert (status, payload["error"]["code"]) == (422, code)
    status, record, _ = await api.call("GET", f"/images/{upload['image_id']}")
    assert (record["tags"], record["description"]) == (["keep"], "keep")


async def test_patching_an_unknown_image_is_404(api: Api) -> None:
    status, payload, _ = await api.call("PATCH", f"/images/{UNKNOWN_ID}", json={"tags": ["x"]})
    assert (status, payload["error"]["code"]) == (404, "image_not_found")


# -- completion: what really arrived ---------------------------------------------------------------


async def test_completion_without_an_upload_is_409(api: Api) -> None:
    upload = await api.upload_url()
    status, payload, _ = await api.call("POST", f"/images/{upload['image_id']}/complete")
    assert (status, payload["error"]["code"]) == (409, "upload_missing")
    status, record, _ = await api.call("GET", f"/images/{upload['image_id']}")
    assert record["status"] == "pending", "the client may still upload and complete"


async def _complete_rejected(api: Api, upload: dict[str, Any], code: str) -> dict[str, Any]:
    status, payload, _ = await api.call("POST", f"/images/{upload['image_id']}/complete")
    assert (status, payload["error"]["code"]) == (422, code), payload
    assert api.object_keys() == [], "the rejected object is deleted"
    status, record, _ = await api.call("GET", f"/images/{upload['image_id']}")
    assert record["status"] == "rejected"
    # Completing again answers the same refusal: whichever completion decided, one answer.
    status, again, _ = await api.call("POST", f"/images/{upload['image_id']}/complete")
    assert (status, again["error"]["code"]) == (422, code)
    status, download, _ = await api.call("GET", f"/images/{upload['image_id']}/download")
    assert (status, download["error"]["code"]) == (409, "image_not_ready")
    return payload  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("declared", "data"),
    [
        pytest.param("image/jpeg", images.HTML, id="html-as-jpeg"),
        pytest.param("image/png", images.jpeg(), id="jpeg-as-png"),
        pytest.param("image/gif", b"", id="empty"),
        pytest.param("image/webp", b"RIFF\x00\x00\x00\x00WAVEfmt ", id="wave-as-webp"),
    ],
)
async def test_spoofed_bytes_are_rejected_and_deleted(api: Api, declared: str, data: bytes) -> None:
    upload = await api.upload_url(content_type=declared)
    assert await api.send_to_s3(upload, data) == 200
    payload = await _complete_rejected(api, upload, "content_mismatch")
    assert payload["error"]["details"]["declared"] == declared


async def test_an_upload_over_the_limit_is_rejected_and_deleted(make_api: MakeApi) -> None:
    api = await make_api(max_upload_bytes=1000)
    upload = await api.upload_url(content_type="image/png")
    assert await api.send_to_s3(upload, images.noisy_png()) == 200
    await _complete_rejected(api, upload, "file_too_large")


async def test_an_upload_of_another_size_than_declared_is_rejected(api: Api) -> None:
    data = images.jpeg()
    upload = await api.upload_url(size=len(data) + 10)
    # moto ignores the signed Content-Length; real S3 refuses the PUT (tests/test_s3_signatures).
    assert await api.send_to_s3(upload, data) == 200
    await _complete_rejected(api, upload, "size_mismatch")


async def test_an_upload_not_matching_its_declared_checksum_is_rejected(api: Api) -> None:
    declared = base64.b64encode(hashlib.sha256(b"other bytes").digest()).decode()
    upload = await api.upload_url(checksum_sha256=declared)
    # Sent without the checksum header, as a client bypassing S3's own check would.
    upload = {**upload, "headers": {"Content-Type": "image/jpeg"}}
    assert await api.send_to_s3(upload, images.jpeg()) == 200
    await _complete_rejected(api, upload, "checksum_mismatch")


async def test_download_of_a_pending_image_is_409(api: Api) -> None:
    upload = await api.upload_url()
    status, payload, _ = await api.call("GET", f"/images/{upload['image_id']}/download")
    assert (status, payload["error"]["code"]) == (409, "image_not_ready")


async def test_deleting_a_pending_image_removes_its_upload(api: Api) -> None:
    upload = await api.upload_url()
    assert await api.send_to_s3(upload, images.jpeg()) == 200
    status, _, _ = await api.call("DELETE", f"/images/{upload['image_id']}")
    assert status == 204
    await _assert_nothing_stored(api)
