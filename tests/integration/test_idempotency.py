"""Idempotency-Key on POST /images/upload: a retried request gets the same image and URL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.conftest import Api

# The table's behaviour, under both transports (IMAGE_SERVICE_AWS_TRANSPORT): every test here
# that makes an API runs once on each.
BOTH_TRANSPORTS = True

BODY = {"content_type": "image/png", "tags": ["retry"]}


async def _post(
    api: Api, key: str, body: dict[str, Any] = BODY, user: str = "alice"
) -> tuple[int, Any]:

    status, payload, _ = await api.call(
        "POST", "/images/upload", user=user, json=body, headers={"Idempotency-Key": key}
    )
    return status, payload


async def _listed(api: Api, user: str = "alice") -> list[str]:
    _, page, _ = await api.call("GET", "/images", user=user)
    return [item["image_id"] for item in page["items"]]


async def test_a_retry_returns_the_same_image_and_url(api: Api) -> None:
    status, first = await _post(api, "order-42")
    assert status == 201
    status, second = await _post(api, "order-42")
    assert (status, second) == (201, first)
    assert await _listed(api) == [first["image_id"]]


async def test_the_same_key_with_another_body_is_refused(api: Api) -> None:
    status, first = await _post(api, "order-43")
    assert status == 201
    status, payload = await _post(api, "order-43", {**BODY, "tags": ["other"]})
    assert (status, payload["error"]["code"]) == (422, "idempotency_key_reused")
    assert await _listed(api) == [first["image_id"]]


async def test_other_keys_and_other_callers_get_new_images(api: Api) -> None:
    _, first = await _post(api, "k-1")
    _, second = await _post(api, "k-2")
    _, bobs = await _post(api, "k-1", user="bob")
    assert len({first["image_id"], second["image_id"], bobs["image_id"]}) == 3
    assert await _listed(api, "bob") == [bobs["image_id"]]


async def test_concurrent_twins_create_one_image(api: Api) -> None:
    results = await asyncio.gather(*(_post(api, "twin") for _ in range(5)))
    assert {status for status, _ in results} == {201}
    assert len({payload["image_id"] for _, payload in results}) == 1
    assert await _listed(api) == [results[0][1]["image_id"]]


async def test_a_key_is_free_again_once_its_url_expired(api: Api) -> None:
    api.clock.pinned = datetime.now(UTC)
    _, first = await _post(api, "daily")
    api.clock.pinned += timedelta(seconds=api.settings.upload_url_expiry + 1)
    _, second = await _post(api, "daily")
    assert second["image_id"] != first["image_id"]


@pytest.mark.parametrize("key", ["has space", "x" * 256, "ünïcode"])
async def test_malformed_keys_are_refused(api: Api, key: str) -> None:
    status, payload = await _post(api, key)
    assert (status, payload["error"]["code"]) == (422, "invalid_idempotency_key")
    assert await _listed(api) == []
