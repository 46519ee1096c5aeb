"""Backend outages, with real server processes taken away: S3, DynamoDB and SQS each run in a
moto process of its own, which a test stops (SIGSTOP: connections hang) or kills (SIGKILL:
connections are refused). The API must answer 503 JSON with Retry-After within its deadline,
/ready must name the backend, and everything must recover once it is back, without a restart."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from image_service.programs.embedded import free_port
from image_service.storage.clients import provision
from tests import images
from tests.integration.conftest import Api, MakeApi
from tests.processes import MotoProcess

# The table's behaviour, under both transports (IMAGE_SERVICE_AWS_TRANSPORT): every test here
# that makes an API runs once on each.
BOTH_TRANSPORTS = True

DEADLINE_SECONDS = 3
# The deadline, plus the time a loaded, shared test machine may take to notice it: still far
# short of what waiting on botocore alone would take (3 attempts of a 5 s read, plus backoff).
ANSWERED_WITHIN_SECONDS = DEADLINE_SECONDS + 4
SERVICES = ("s3", "dynamodb", "sqs")


@pytest.fixture
async def backends(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[dict[str, MotoProcess]]:
    """One moto process per AWS service, each reached through its own endpoint variable."""
    started = {service: await MotoProcess(free_port()).start() for service in SERVICES}
    for service, moto in started.items():
        monkeypatch.setenv(f"AWS_ENDPOINT_URL_{service.upper()}", moto.endpoint)
    yield started
    for moto in started.values():
        await moto.kill()


@pytest.fixture
async def api(backends: dict[str, MotoProcess], make_api: MakeApi) -> Api:
    return await make_api(request_timeout_seconds=DEADLINE_SECONDS)


async def _timed(api: Api, method: str, path: str, **kwargs: Any) -> tuple[int, Any, Any, float]:
    started = time.monotonic()
    status, body, headers = await api.call(method, path, **kwargs)
    return status, body, headers, time.monotonic() - started


async def _uploaded(api: Api) -> str:
    upload = await api.upload_url()
    assert await api.send_to_s3(upload, images.jpeg()) == 200
    return str(upload["image_id"])


def _assert_unavailable(status: int, body: Any, headers: Any, seconds: float, backend: str) -> None:
    assert status == 503, body
    assert body["error"]["code"] in {"backend_timeout", "backend_unavailable"}
    assert body["error"]["details"]["backend"] == backend
    assert int(headers["Retry-After"]) >= 1
    assert seconds < ANSWERED_WITHIN_SECONDS


async def _assert_counted_once(api: Api, backend: str, code: str) -> None:
    """The 503 is on /metrics, blaming its backend, for an operator's alert."""
    samples = await api.metrics()
    failures = {
        labels: value
        for (name, labels), value in samples.items()
        if name == "image_service_backend_failures_total"
    }
    assert failures == {(("backend", backend), ("code", code)): 1.0}


@pytest.mark.parametrize("backend", SERVICES)
async def test_a_hung_backend_gets_a_prompt_503_and_ready_names_it(
    api: Api, backends: dict[str, MotoProcess], backend: str
) -> None:
    image_id = await _uploaded(api)
    # What needs the backend: completion reads S3 first, writes DynamoDB, then queues a job.
    if backend == "dynamodb":
        needs_it: tuple[str, str] = ("GET", "/images")
    else:
        needs_it = ("POST", f"/images/{image_id}/complete")
    backends[backend].pause()
    try:
        status, body, headers, seconds = await _timed(api, *needs_it)
        _assert_unavailable(status, body, headers, seconds, backend)
        await _assert_counted_once(api, backend, body["error"]["code"])

        status, body, _, seconds = await _timed(api, "GET", "/ready", user=None)
        assert status == 503
        assert body["error"]["details"]["checks"] == {
            name: ("timeout" if name == backend else "ok") for name in SERVICES
        }
        assert backend in body["error"]["message"]
        assert seconds < ANSWERED_WITHIN_SECONDS
    finally:
        backends[backend].resume()

    # Back: the same calls succeed on the same app, and the image goes all the way.
    status, body, _ = await api.call(*needs_it)
    assert status == 200, body
    status, _, _ = await api.call("POST", f"/images/{image_id}/complete")
    assert status == 200
    assert (await api.processed(image_id))["status"] == "ready"
    assert (await api.call("GET", "/ready", user=None))[0] == 200


async def test_an_upload_url_waiting_on_its_batched_write_names_dynamodb(
    api: Api, backends: dict[str, MotoProcess]
) -> None:
    """Upload URLs share DynamoDB writes (group commit) made in another task; a request whose
    deadline passes while it waits for one must still blame DynamoDB, not "a backend"."""
    await api.upload_url()  # its owner's usage is read and cached: the next one only writes
    backends["dynamodb"].pause()
    try:
        status, body, headers, seconds = await _timed(
            api, "POST", "/images/upload", json={"content_type": "image/png"}
        )
        _assert_unavailable(status, body, headers, seconds, "dynamodb")
    finally:
        backends["dynamodb"].resume()


async def test_a_refused_backend_gets_a_503_and_the_api_recovers_when_it_returns(
    api: Api, backends: dict[str, MotoProcess]
) -> None:
    await backends["dynamodb"].kill()

    status, body, headers, seconds = await _timed(api, "GET", "/images")
    _assert_unavailable(status, body, headers, seconds, "dynamodb")
    await _assert_counted_once(api, "dynamodb", body["error"]["code"])
    status, body, _ = await api.call("GET", "/ready", user=None)
    assert status == 503
    assert body["error"]["details"]["checks"]["dynamodb"] != "ok"

    # It comes back (empty, as a fresh moto is: the table is made again, as `init` would).
    await backends["dynamodb"].start()
    await provision(api.settings)
    status, body, _ = await api.call("GET", "/images")
    assert (status, body["items"]) == (200, [])
    assert (await api.call("GET", "/ready", user=None))[0] == 200


async def test_reads_that_do_not_need_the_hung_backend_still_answer(
    api: Api, backends: dict[str, MotoProcess]
) -> None:
    image_id = await _uploaded(api)
    backends["s3"].pause()
    try:
        # Upload URLs are signed locally and listing is DynamoDB's: no S3 call in either. Had
        # either waited on S3, the deadline would have answered it with a 503.
        status, _, _ = await api.call("POST", "/images/upload", json={"content_type": "image/png"})
        assert status == 201
        status, page, _ = await api.call("GET", "/images")
        assert status == 200
        assert image_id in {item["image_id"] for item in page["items"]}
    finally:
        backends["s3"].resume()


async def test_renditions_in_memory_outlive_an_s3_outage_and_new_ones_get_a_503(
    api: Api, backends: dict[str, MotoProcess]
) -> None:
    """Renditions are read by a URL the service signs and plain HTTP, not botocore: an S3 that
    has gone away is still a prompt 503 naming it, and what the process holds is still served."""
    image_id = await _uploaded(api)
    status, body, _ = await api.call("POST", f"/images/{image_id}/complete")
    assert status == 200, body
    await api.processed(image_id)
    _, stored, _ = await api.call("GET", f"/images/{image_id}/render?w=128&format=jpeg")
    _, fresh, _ = await api.call("GET", f"/images/{image_id}/render?w=256&format=jpeg")
    async with api.http.get(stored["url"]) as response:
        assert response.status == 200  # rendered now, and kept in memory

    await backends["s3"].kill()
    async with api.http.get(stored["url"]) as response:
        assert response.status == 200
    started = time.monotonic()
    async with api.http.get(fresh["url"]) as response:
        body = await response.json()
        _assert_unavailable(
            response.status, body, response.headers, time.monotonic() - started, "s3"
        )
