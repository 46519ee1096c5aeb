"""Abuse limits and response headers that keep URLs and tokens out of caches and sniffers."""

from __future__ import annotations

import asyncio

from tests.integration.conftest import MakeApi


async def test_upload_urls_are_rate_limited_per_user(make_api: MakeApi) -> None:
    api = await make_api(upload_burst=3, upload_rate_per_minute=60)
    for _ in range(3):
        await api.upload_url(user="alice")
    status, body, headers = await api.call(
        "POST", "/images/upload", user="alice", json={"content_type": "image/png"}
    )
    assert (status, body["error"]["code"]) == (429, "rate_limited")
    assert headers["Retry-After"] == "1"
    assert body["error"]["details"] == {"retry_after_seconds": 1}

    status, page, _ = await api.call("GET", "/images", user="alice")
    assert len(page["items"]) == 3, "the refused request stored nothing"

    # Another user has a bucket of their own.
    await api.upload_url(user="bob")
    # One token is back after a second at 60 a minute.
    await asyncio.sleep(1.05)
    await api.upload_url(user="alice")


async def test_reads_are_not_rate_limited(make_api: MakeApi) -> None:
    api = await make_api(upload_burst=1, upload_rate_per_minute=1)
    for _ in range(10):
        status, _, _ = await api.call("GET", "/images")
        assert status == 200


async def test_responses_carrying_urls_are_not_cacheable(make_api: MakeApi) -> None:
    api = await make_api()
    status, _, headers = await api.call(
        "POST", "/images/upload", json={"content_type": "image/png"}
    )
    assert status == 201
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"


async def test_error_responses_are_nosniff_too(make_api: MakeApi) -> None:
    api = await make_api()
    for method, path in [("GET", "/missing"), ("GET", "/images"), ("PUT", "/health")]:
        _, _, headers = await api.call(method, path, user=None)
        assert headers["X-Content-Type-Options"] == "nosniff"


async def test_absurd_query_strings_are_json_4xx(make_api: MakeApi) -> None:
    api = await make_api()
    cases = [
        [("tag", f"t{i}") for i in range(500)],
        [("limit", "9" * 400)],
        [("start_date", "2026-01-01" * 50)],
        [(f"junk{i}", "x") for i in range(300)],
        [("cursor", "A" * 1500)],
        [("limit", "5"), ("limit", "6")],
    ]
    for params in cases:
        status, body, _ = await api.call("GET", "/images", params=params)
        assert status == 422, params[:2]
        assert body["error"]["code"] == "validation_error"
