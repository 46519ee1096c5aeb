"""Authentication and owner isolation: one test per way in that must stay shut."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jwt
import pytest

from tests import images
from tests.integration.conftest import JWT_SECRET, Api, MakeApi

NOW = int(time.time())


def _bearer(
    claims: dict[str, Any], key: str = JWT_SECRET, algorithm: str = "HS256"
) -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt.encode(claims, key, algorithm=algorithm)}"}


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        pytest.param({}, "missing_token", id="missing"),
        pytest.param({"Authorization": "Basic YWxpY2U6c2VjcmV0"}, "invalid_token", id="not-bearer"),
        pytest.param({"Authorization": "Bearer"}, "invalid_token", id="empty-bearer"),
        pytest.param({"Authorization": "Bearer not.a.jwt"}, "invalid_token", id="malformed"),
        pytest.param(
            _bearer(
                {"sub": "alice", "exp": NOW + 3600}, key="another-secret-of-at-least-32-chars!"
            ),
            "invalid_token",
            id="wrong-key",
        ),
        pytest.param(_bearer({"sub": "alice", "exp": NOW - 60}), "token_expired", id="expired"),
        pytest.param(_bearer({"sub": "alice"}), "invalid_token", id="no-exp"),
        pytest.param(_bearer({"exp": NOW + 3600}), "invalid_token", id="no-sub"),
        pytest.param(_bearer({"sub": "", "exp": NOW + 3600}), "invalid_token", id="empty-sub"),
        pytest.param(
            _bearer({"sub": "a" * 300, "exp": NOW + 3600}), "invalid_token", id="huge-sub"
        ),
        pytest.param(
            _bearer({"sub": "alice", "exp": NOW + 3600}, key=JWT_SECRET, algorithm="HS512"),
            "invalid_token",
            id="other-algorithm",
        ),
    ],
)
async def test_unauthenticated_requests_get_401(
    api: Api, headers: dict[str, str], code: str
) -> None:
    status, body, response_headers = await api.call("GET", "/images", user=None, headers=headers)
    assert status == 401
    assert body["error"]["code"] == code
    assert response_headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/images/upload"),
        ("GET", "/images"),
        ("GET", "/images/00000000-0000-4000-8000-000000000000"),
        ("PATCH", "/images/00000000-0000-4000-8000-000000000000"),
        ("DELETE", "/images/00000000-0000-4000-8000-000000000000"),
        ("POST", "/images/00000000-0000-4000-8000-000000000000/complete"),
        ("GET", "/images/00000000-0000-4000-8000-000000000000/download"),
    ],
)
async def test_every_images_route_requires_a_token(api: Api, method: str, path: str) -> None:
    status, body, _ = await api.call(method, path, user=None, json={})
    assert (status, body["error"]["code"]) == (401, "missing_token")


async def test_unsigned_token_is_refused(api: Api) -> None:
    unsigned = jwt.encode({"sub": "alice", "exp": NOW + 3600}, key=None, algorithm="none")
    status, body, _ = await api.call(
        "GET", "/images", user=None, headers={"Authorization": f"Bearer {unsigned}"}
    )
    assert (status, body["error"]["code"]) == (401, "invalid_token")


async def test_another_users_image_is_not_found_on_every_route(api: Api) -> None:
    upload, status, original = await api.upload(images.jpeg(), user="alice", tags=["mine"])
    assert status == 200
    image_id = upload["image_id"]
    attempts = [
        ("GET", f"/images/{image_id}", {}),
        ("PATCH", f"/images/{image_id}", {"json": {"tags": ["stolen"]}}),
        ("POST", f"/images/{image_id}/complete", {}),
        ("GET", f"/images/{image_id}/download", {}),
        ("DELETE", f"/images/{image_id}", {}),
    ]
    for method, path, kwargs in attempts:
        status, body, _ = await api.call(method, path, user="mallory", **kwargs)
        assert (status, body["error"]["code"]) == (404, "image_not_found"), (method, path)

    status, page, _ = await api.call("GET", "/images", user="mallory")
    assert page["items"] == []
    status, unchanged, _ = await api.call("GET", f"/images/{image_id}", user="alice")
    assert unchanged == original
    assert f"images/alice/{image_id}/original" in api.object_keys(), "nothing was deleted"


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", "/images/upload", {"json": {"content_type": "image/png", "user_id": "alice"}}),
        ("GET", "/images?user_id=alice", {}),
        ("GET", "/images/00000000-0000-4000-8000-000000000000?user_id=alice", {}),
        ("DELETE", "/images/00000000-0000-4000-8000-000000000000?user_id=alice", {}),
    ],
)
async def test_acting_for_another_user_without_admin_is_forbidden(
    api: Api, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    status, body, _ = await api.call(method, path, user="mallory", **kwargs)
    assert (status, body["error"]["code"]) == (403, "forbidden")
    assert api.object_keys() == []


async def test_passing_ones_own_user_id_is_allowed(api: Api) -> None:
    status, _, _ = await api.call("GET", "/images?user_id=alice", user="alice")
    assert status == 200


async def test_audience_and_issuer_are_enforced_when_configured(make_api: MakeApi) -> None:
    api = await make_api(jwt_audience="images-api", jwt_issuer="https://id.example.test/")
    good = {
        "sub": "alice",
        "exp": NOW + 3600,
        "aud": "images-api",
        "iss": "https://id.example.test/",
    }
    status, _, _ = await api.call("GET", "/images", user=None, headers=_bearer(good))
    assert status == 200
    for wrong in ({"aud": "other-api"}, {"iss": "https://evil.example.test/"}, {"aud": None}):
        claims = {k: v for k, v in {**good, **wrong}.items() if v is not None}
        status, body, _ = await api.call("GET", "/images", user=None, headers=_bearer(claims))
        assert (status, body["error"]["code"]) == (401, "invalid_token"), wrong


async def test_a_remembered_token_still_expires_and_waits_for_nbf(api: Api) -> None:
    """Verified tokens are remembered between requests, never past `exp` nor before `nbf`."""
    now = int(time.time())
    short = _bearer({"sub": "alice", "exp": now + 2})
    for _ in range(2):
        status, _, _ = await api.call("GET", "/images", user=None, headers=short)
        assert status == 200
    early = _bearer({"sub": "alice", "exp": now + 60, "nbf": now + 2})
    status, body, _ = await api.call("GET", "/images", user=None, headers=early)
    assert (status, body["error"]["code"]) == (401, "invalid_token")
    await asyncio.sleep(now + 2.2 - time.time())
    status, body, _ = await api.call("GET", "/images", user=None, headers=short)
    assert (status, body["error"]["code"]) == (401, "token_expired")
    status, _, _ = await api.call("GET", "/images", user=None, headers=early)
    assert status == 200, "usable once its nbf has passed"
    status, _, _ = await api.call("GET", "/images", user=None, headers=early)
    assert status == 200, "and remembered from then on"
