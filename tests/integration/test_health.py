"""Liveness, readiness, and what a backend outage looks like to a client."""

from __future__ import annotations

from image_service.programs.embedded import free_port
from tests import images
from tests.integration.conftest import MakeApi


def _dead_endpoint() -> str:
    """An address where nothing listens: every connection is refused at once."""
    return f"http://127.0.0.1:{free_port()}"


async def test_health_is_public_and_ok(make_api: MakeApi) -> None:
    api = await make_api()
    status, body, _ = await api.call("GET", "/health", user=None)
    assert (status, body) == (200, {"status": "ok"})


async def test_ready_checks_each_backend(make_api: MakeApi) -> None:
    api = await make_api()
    status, body, _ = await api.call("GET", "/ready", user=None)
    assert (status, body) == (
        200,
        {"status": "ok", "checks": {"s3": "ok", "dynamodb": "ok", "sqs": "ok"}},
    )


async def test_ready_names_the_missing_resources(make_api: MakeApi) -> None:
    api = await make_api(provisioned=False)
    status, body, headers = await api.call("GET", "/ready", user=None)
    assert status == 503
    assert body["error"]["code"] == "not_ready"
    checks = body["error"]["details"]["checks"]
    assert checks == {
        "s3": "backend_unavailable",
        "dynamodb": "backend_unavailable",
        "sqs": "backend_unavailable",
    }
    assert headers["Retry-After"] == "1"


async def test_dynamodb_outage_is_a_503_with_retry_after(make_api: MakeApi) -> None:
    api = await make_api(environment={"AWS_ENDPOINT_URL_DYNAMODB": _dead_endpoint()})
    status, body, _ = await api.call("GET", "/ready", user=None)
    assert status == 503
    checks = body["error"]["details"]["checks"]
    assert checks["s3"] == "ok"
    # Refused connections are retried with backoff, which may outlast the probe's deadline.
    assert checks["dynamodb"] in {"backend_unavailable", "timeout"}

    status, body, headers = await api.call("GET", "/images")
    assert status == 503
    assert body["error"] == {
        "code": "backend_unavailable",
        "message": "dynamodb is unavailable; retry shortly.",
        "details": {"backend": "dynamodb"},
    }
    assert headers["Retry-After"] == "1"
    status, body, _ = await api.call("POST", "/images/upload", json={"content_type": "image/png"})
    assert (status, body["error"]["code"]) == (503, "backend_unavailable")


async def test_s3_outage_is_a_503_and_loses_nothing(make_api: MakeApi) -> None:
    healthy = await make_api()
    upload = await healthy.upload_url()
    assert await healthy.send_to_s3(upload, images.jpeg()) == 200

    # The same bucket and table, served by an app whose S3 is unreachable.
    api = await make_api(
        provisioned=False,
        bucket=healthy.settings.bucket,
        table=healthy.settings.table,
        environment={"AWS_ENDPOINT_URL_S3": _dead_endpoint()},
    )
    status, body, _ = await api.call("GET", "/ready", user=None)
    checks = body["error"]["details"]["checks"]
    assert checks["dynamodb"] == "ok"
    assert checks["s3"] in {"backend_unavailable", "timeout"}
    status, body, headers = await api.call("POST", f"/images/{upload['image_id']}/complete")
    assert (status, body["error"]["code"]) == (503, "backend_unavailable")
    assert body["error"]["details"] == {"backend": "s3"}
    assert headers["Retry-After"] == "1"

    # Nothing was lost: once S3 answers again the same completion succeeds.
    status, record, _ = await healthy.call("POST", f"/images/{upload['image_id']}/complete")
    assert (status, record["status"]) == (200, "processing")
    assert (await healthy.processed(upload["image_id"]))["status"] == "ready"
