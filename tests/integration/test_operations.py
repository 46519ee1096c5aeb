"""Running it as operators do: real `image-service` processes, their logs and their signals."""

from __future__ import annotations

import asyncio
import json
import uuid

import aiohttp
import pytest

from image_service.client import ImageServiceClient
from image_service.programs.embedded import free_port
from tests import images
from tests.faults import FaultProxy, operation, worker_in_mid_job
from tests.integration.conftest import Api, MakeApi, auth, emulator_client, scrape, token
from tests.processes import Program, processed_by_a_new_worker, wait_for_port


async def _serve(
    api: Api, *, aws_endpoint: str | None = None, **settings: str
) -> tuple[Program, str]:
    port = free_port()
    environment = api.child_environment(PORT=str(port), **settings)
    if aws_endpoint is not None:
        environment["AWS_ENDPOINT_URL"] = aws_endpoint
    program = await Program.start("serve", env=environment)
    await wait_for_port(port, owner=program.process)
    return program, f"http://127.0.0.1:{port}"


def _access_lines(program: Program) -> list[dict[str, object]]:
    entries = [json.loads(line) for line in program.lines if line.startswith("{")]
    return [entry for entry in entries if entry["logger"] == "image_service.access"]


async def test_every_request_leaves_one_json_line_with_its_id_user_route_and_status(
    api: Api,
) -> None:
    program, url = await _serve(api)
    missing = str(uuid.uuid4())
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{url}/images", headers={**auth("alice"), "X-Request-ID": "trace-42"}
        ) as listed:
            assert listed.headers["X-Request-ID"] == "trace-42"
        async with http.get(f"{url}/images/{missing}", headers=auth("alice")) as absent:
            absent_id = absent.headers["X-Request-ID"]
        async with http.get(f"{url}/images") as anonymous:
            anonymous_id = anonymous.headers["X-Request-ID"]
    output = await program.stop()

    lines = {entry["request_id"]: entry for entry in _access_lines(program)}
    assert len(_access_lines(program)) == len(lines)  # one line per request
    listed_line = lines["trace-42"]
    assert {k: listed_line[k] for k in ("method", "route", "path", "status", "user")} == {
        "method": "GET",
        "route": "/images",
        "path": "/images",
        "status": 200,
        "user": "alice",
    }
    assert isinstance(listed_line["duration_ms"], float)
    assert listed_line["level"] == "INFO"
    assert (lines[absent_id]["status"], lines[absent_id]["path"]) == (404, f"/images/{missing}")
    assert lines[absent_id]["route"].startswith("/images/{image_id")  # type: ignore[union-attr]
    assert (lines[anonymous_id]["status"], lines[anonymous_id]["user"]) == (401, None)
    assert token("alice").split(".")[2] not in output  # no token signature in any log line


async def test_an_unsafe_request_id_is_replaced_not_echoed(api: Api) -> None:
    status, _, headers = await api.call("GET", "/images", headers={"X-Request-ID": "a\tb" * 3})

    assert status == 200
    assert len(headers["X-Request-ID"]) == 32
    assert "\t" not in headers["X-Request-ID"]


async def test_sigterm_stops_accepting_and_finishes_the_request_in_flight(
    api: Api, moto_endpoint: str
) -> None:
    async with FaultProxy(moto_endpoint) as proxy:
        program, url = await _serve(api, aws_endpoint=proxy.url, SHUTDOWN_GRACE_SECONDS="20")
        slow_query = proxy.delay(operation("Query"), 2.0, times=1)
        async with ImageServiceClient(url, token("alice")) as client:
            await client.create_upload("image/jpeg")
            listing = asyncio.create_task(client.list())
            await asyncio.wait_for(slow_query.seen.wait(), timeout=10)

            program.signal()
            async with asyncio.timeout(1.5):  # the listener closes at once...
                while True:
                    try:
                        _, writer = await asyncio.open_connection("127.0.0.1", url.rsplit(":")[-1])
                    except OSError:
                        break
                    writer.close()
                    await asyncio.sleep(0.05)
            assert not listing.done()  # ...while the request in flight goes on
            page = await listing
        assert len(page.items) == 1
        assert await program.wait(within=30) == 0


async def test_sigterm_lets_the_worker_finish_the_job_it_is_running(
    make_api: MakeApi, moto_endpoint: str
) -> None:
    api = await make_api(embedded_worker=False)
    client = api.images("alice")
    async with FaultProxy(moto_endpoint) as proxy:
        environment = api.child_environment(SHUTDOWN_GRACE_SECONDS="20")
        worker, image_id = await worker_in_mid_job(
            client, proxy, environment, images.noisy("JPEG"), held_for=2.0
        )

        worker.signal()
        assert await worker.wait(within=30) == 0
    assert "worker stopped" in worker.output
    assert (await client.get(image_id)).status == "ready"


async def test_a_job_cut_short_by_the_grace_period_goes_straight_back_to_the_queue(
    make_api: MakeApi, moto_endpoint: str
) -> None:
    api = await make_api(embedded_worker=False, job_visibility_seconds=300)
    client = api.images("alice")
    async with FaultProxy(moto_endpoint) as proxy:
        environment = api.child_environment(SHUTDOWN_GRACE_SECONDS="1")
        impatient, image_id = await worker_in_mid_job(
            client, proxy, environment, images.jpeg(), held_for=30.0
        )
        impatient.signal()
        assert await impatient.wait(within=15) == 0
    assert "cut short by shutdown" in impatient.output

    # Visible again at once, not after the 300 s visibility: the next worker finishes it.
    image, _ = await processed_by_a_new_worker(client, environment, image_id)
    assert image.status == "ready"


async def test_a_worker_counts_its_jobs_on_a_port_of_its_own(
    make_api: MakeApi, moto_endpoint: str
) -> None:
    api = await make_api(embedded_worker=False)
    client = api.images("alice")
    sqs = emulator_client("sqs", moto_endpoint)
    queue_url = sqs.get_queue_url(QueueName=api.settings.queue_name)["QueueUrl"]
    sqs.send_message(QueueUrl=queue_url, MessageBody="not a job")  # fails, is retried later
    ticket = await client.create_upload("image/jpeg")
    await client.send(ticket, images.jpeg())
    await client.complete(ticket.image_id)
    port = free_port()
    environment = api.child_environment(WORKER_METRICS_PORT=str(port))

    worker = await Program.start("worker", env=environment)
    try:
        await wait_for_port(port, owner=worker.process)
        assert (await client.wait_until_processed(ticket.image_id, max_wait=30)).status == "ready"
        async with asyncio.timeout(20):
            while True:
                figures = await scrape(api.http, f"http://127.0.0.1:{port}/metrics")
                # Both jobs ended: the image is ready a moment before its job is counted done.
                jobs = "image_service_worker_jobs_total"
                if (
                    figures[jobs, (("outcome", "failed"),)]
                    and figures[jobs, (("outcome", "done"),)]
                ):
                    break
                await asyncio.sleep(0.2)
        async with api.http.get(f"http://127.0.0.1:{port}/health") as response:
            assert response.status == 200
    finally:
        await worker.stop()

    assert figures[("image_service_worker_jobs_total", (("outcome", "done"),))] == 1
    assert figures[("image_service_worker_jobs_total", (("outcome", "cut_short"),))] == 0
    assert figures[("image_service_worker_job_duration_seconds_count", (("outcome", "done"),))] == 1
    assert figures[("image_service_worker_jobs_in_flight", ())] == 0
    assert figures[("image_service_sweeper_actions_total", (("action", "requeued"),))] == 0


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
async def test_serve_exits_cleanly_on_either_stop_signal(api: Api, signal_name: str) -> None:
    import signal

    program, _ = await _serve(api)
    program.signal(getattr(signal, signal_name))

    assert await program.wait(within=30) == 0
