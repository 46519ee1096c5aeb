"""/metrics in Prometheus text format: HTTP traffic by route template, DynamoDB calls and reads."""

from __future__ import annotations

import asyncio

from tests.integration.conftest import Api, MakeApi


async def test_requests_are_counted_by_route_template_and_status(api: Api) -> None:
    upload = await api.upload_url()
    await api.call("GET", f"/images/{upload['image_id']}")
    await api.call("GET", "/images/00000000-0000-4000-8000-000000000000")
    await api.call("GET", "/nowhere")
    await api.call("GET", "/images", user=None)
    samples = await api.metrics()

    def requests(route: str, method: str, status: str) -> float:
        labels = (("method", method), ("route", route), ("status", status))
        return samples.get(("image_service_http_requests_total", labels), 0.0)

    image_route = "/images/{image_id}"
    assert requests("/images/upload", "POST", "201") == 1
    assert requests(image_route, "GET", "200") == 1
    assert requests(image_route, "GET", "404") == 1
    assert requests("unmatched", "GET", "404") == 1
    assert requests("/images", "GET", "401") == 1
    buckets = (
        "image_service_http_request_duration_seconds_count",
        (("method", "POST"), ("route", "/images/upload"), ("status", "201")),
    )
    assert samples[buckets] == 1


async def test_dynamodb_calls_and_items_read_are_counted(make_api: MakeApi) -> None:
    api = await make_api(upload_burst=1000)
    for _ in range(60):
        await api.upload_url()
    before = await api.metrics()
    status, page, _ = await api.call("GET", "/images", params={"limit": "20"})
    assert (status, len(page["items"])) == (200, 20)
    after = await api.metrics()

    def delta(name: str, labels: tuple[tuple[str, str], ...] = ()) -> float:
        return after.get((name, labels), 0.0) - before.get((name, labels), 0.0)

    # A page of 20 from 60, unfiltered: one query reading the page and one look-ahead item.
    assert delta("image_service_dynamodb_requests_total", (("operation", "Query"),)) == 1
    assert delta("image_service_dynamodb_items_read_total") == 21
    # One at a time, each creation was a batch of its own.
    assert (
        after[("image_service_dynamodb_requests_total", (("operation", "BatchWriteItem"),))] == 60
    )


async def test_upload_urls_asked_together_share_writes(make_api: MakeApi) -> None:
    """The upload-URL path's record writes are grouped: concurrent requests share
    BatchWriteItem calls, and every record is stored."""
    api = await make_api(upload_burst=1000)
    before = await api.metrics()
    uploads = await asyncio.gather(
        *(api.upload_url(user=f"user{n % 5}", tags=["bulk", f"n{n}"]) for n in range(60))
    )
    after = await api.metrics()
    batch_writes = ("image_service_dynamodb_requests_total", (("operation", "BatchWriteItem"),))
    calls = after.get(batch_writes, 0.0) - before.get(batch_writes, 0.0)
    # 60 pending records, one item each (tags index an image once it is completed): 25 a call.
    assert 3 <= calls < 60
    for n, upload in enumerate(uploads):
        user = f"user{n % 5}"
        status, record, _ = await api.call("GET", f"/images/{upload['image_id']}", user=user)
        assert (status, record["status"], record["tags"]) == (200, "pending", ["bulk", f"n{n}"])
    for user in (f"user{n}" for n in range(5)):
        status, page, _ = await api.call("GET", "/images", user=user, params={"limit": "100"})
        assert len(page["items"]) == 12
