"""Crashes and partial failures: nothing is lost, nothing is done twice.

Faults are real: a worker process killed with SIGKILL, and calls failed or delayed on the wire by
a proxy between the service and moto (tests/faults.py), never by patching the service's code."""

from __future__ import annotations

import asyncio
import json

import pytest

from image_service.client import ApiError, Image
from image_service.programs.embedded import free_port
from image_service.programs.services import variant_specs
from image_service.storage.clients import MAX_POOL_CONNECTIONS
from tests import images
from tests.faults import Call, FaultProxy, operation, s3, worker_in_mid_job
from tests.integration.conftest import Api, MakeApi, emulator_client, scrape
from tests.integration.test_import import origin
from tests.processes import Program, processed_by_a_new_worker


def _delete_objects(call: Call) -> bool:
    return not call.target and call.method == "POST" and "delete" in call.query


def _stored_keys(api: Api, image_id: str, moto_endpoint: str) -> list[str]:
    """Straight from moto: the app's own S3 view may go through the proxy, which shares this
    event loop and could not answer a blocking call made from it."""
    listing = emulator_client("s3", moto_endpoint).list_objects_v2(Bucket=api.settings.bucket)
    return sorted(item["Key"] for item in listing.get("Contents", []) if image_id in item["Key"])


def _expected_keys(api: Api, owner: str, image_id: str) -> list[str]:
    variants = [
        f"images/{owner}/{image_id}/{spec.name}.{fmt}"
        for spec in variant_specs(api.settings)
        for fmt in ("jpg" if f == "jpeg" else f for f in spec.formats)
    ]
    return sorted([f"images/{owner}/{image_id}/original", *variants])


def _sweeping(api: Api) -> dict[str, str]:
    """A worker that sweeps every second for images stuck a second, on moto itself (the
    proxy a test routed the API through is gone by then). The sweeper is the subject of the
    tests that use this: what it does once an image has been stuck for STUCK_AFTER_SECONDS,
    on its SWEEP_INTERVAL_SECONDS; their defaults (minutes) only set when it happens."""
    environment = api.child_environment(STUCK_AFTER_SECONDS="1", SWEEP_INTERVAL_SECONDS="1")
    for service in ("S3", "DYNAMODB", "SQS"):
        environment.pop(f"AWS_ENDPOINT_URL_{service}", None)
    return environment


def _events(programs: list[Program], event: str) -> list[str]:
    found = []
    for program in programs:
        for line in program.lines:
            if line.startswith("{") and f'"event":"{event}"' in line:
                found.append(json.loads(line)["image_id"])
    return found


async def test_a_worker_killed_mid_job_loses_nothing_and_duplicates_nothing(
    make_api: MakeApi, moto_endpoint: str
) -> None:
    api = await make_api(embedded_worker=False, job_visibility_seconds=3)
    client = api.images("alice")
    environment = api.child_environment(JOB_VISIBILITY_SECONDS="3")
    async with FaultProxy(moto_endpoint) as proxy:
        doomed, image_id = await worker_in_mid_job(
            client, proxy, environment, images.noisy("JPEG"), held_for=30.0
        )
        await doomed.kill()  # SIGKILL: no drain, no cleanup, the job's message still held

    image, survivor = await processed_by_a_new_worker(client, environment, image_id)
    assert image.status == "ready"
    assert _events([doomed, survivor], "image_ready") == [image_id]  # exactly once
    expected = _expected_keys(api, "alice", image_id)
    assert _stored_keys(api, image_id, moto_endpoint) == expected
    assert len(image.variants) == len(expected) - 1


async def test_the_sweeper_requeues_an_image_whose_job_was_lost(
    make_api: MakeApi, moto_endpoint: str
) -> None:
    api = await make_api(embedded_worker=False)
    async with FaultProxy(moto_endpoint) as proxy, origin() as images_origin:
        # The API's queue refuses every job: completion publishes the record, then fails;
        # an import is stored fetching, its job left to the sweeper.
        lost = proxy.fail(operation("SendMessage"), status=500, times=None)
        app = await make_api(
            replica_of=api,
            embedded_worker=False,
            import_allow_private=True,
            environment={"AWS_ENDPOINT_URL_SQS": proxy.url},
        )
        client = app.images("alice")
        ticket = await client.create_upload("image/jpeg")
        await client.send(ticket, images.jpeg())
        with pytest.raises(ApiError) as refused:
            await client.complete(ticket.image_id)
        assert (refused.value.status, refused.value.details["backend"]) == (503, "sqs")
        status, imported, _ = await app.call(
            "POST", "/images/import", json={"url": images_origin.url("/photo.jpg")}
        )
        assert (status, imported["status"]) == (202, "fetching")
        assert lost.hits >= 2
        assert (await client.get(ticket.image_id)).status == "processing"  # and no job anywhere

        port = free_port()
        environment = _sweeping(api) | {
            "IMAGE_SERVICE_WORKER_METRICS_PORT": str(port),
            "IMAGE_SERVICE_IMPORT_ALLOW_PRIVATE": "true",
        }
        worker = await Program.start("worker", env=environment)
        try:
            for image_id in (ticket.image_id, imported["image_id"]):
                assert (await client.wait_until_processed(image_id, max_wait=30)).status == "ready"
            figures = await scrape(api.http, f"http://127.0.0.1:{port}/metrics")
        finally:
            await worker.stop()
    assert sorted(_events([worker], "image_requeued")) == sorted(
        [ticket.image_id, imported["image_id"]]
    )
    assert figures[("image_service_sweeper_actions_total", (("action", "requeued"),))] == 2


async def _ready_image_behind(proxy: FaultProxy, make_api: MakeApi) -> tuple[Api, Image]:
    """An API whose S3 calls cross ``proxy``, and one image of alice's, ready."""
    api = await make_api(environment={"AWS_ENDPOINT_URL_S3": proxy.url})
    return api, await api.images("alice").upload(images.jpeg(), wait=True)


async def test_a_delete_whose_s3_step_failed_is_finished_by_a_retry(
    make_api: MakeApi, moto_endpoint: str
) -> None:
    async with FaultProxy(moto_endpoint) as proxy:
        api, image = await _ready_image_behind(proxy, make_api)
        client = api.images("alice")
        failing = proxy.fail(_delete_objects, status=500, times=None)

        with pytest.raises(ApiError) as refused:
            await client.delete(image.image_id, permanent=True)
        assert (refused.value.status, refused.value.details["backend"]) == (503, "s3")
        # Never served again while half deleted.
        assert (await api.call("GET", f"/images/{image.image_id}"))[1]["status"] == "deleting"
        download, _, _ = await api.call("GET", f"/images/{image.image_id}/download")
        assert download == 409 or download == 404
        assert _stored_keys(api, image.image_id, moto_endpoint)

        failing.times = failing.hits  # S3 is back
        await client.delete(image.image_id, permanent=True)
    assert _stored_keys(api, image.image_id, moto_endpoint) == []
    status, _, _ = await api.call("GET", f"/images/{image.image_id}")
    assert status == 404


async def test_image_service_sweep_finishes_a_delete_nobody_retried(
    make_api: MakeApi, moto_endpoint: str
) -> None:
    async with FaultProxy(moto_endpoint) as proxy:
        api, image = await _ready_image_behind(proxy, make_api)
        proxy.fail(_delete_objects, status=503, times=None)
        status, _, _ = await api.call(
            "DELETE", f"/images/{image.image_id}", params={"permanent": "true"}
        )
        assert status == 503
    await asyncio.sleep(1.1)  # stuck for longer than STUCK_AFTER_SECONDS=1

    sweep = await Program.start("sweep", env=_sweeping(api))
    assert await sweep.wait() == 0, sweep.output

    assert f"delete finished: alice/{image.image_id}" in sweep.output
    assert "swept: 0 requeued, 1 deletes finished, 0 purged from the trash" in sweep.output
    assert _stored_keys(api, image.image_id, moto_endpoint) == []
    table = emulator_client("dynamodb", moto_endpoint).scan(TableName=api.settings.table)
    assert not [item for item in table["Items"] if image.image_id in item["image_id"]["S"]]


async def test_a_failed_record_write_after_a_good_upload_is_healed_by_completing_again(
    make_api: MakeApi, moto_endpoint: str
) -> None:
    async with FaultProxy(moto_endpoint) as proxy:
        api = await make_api(environment={"AWS_ENDPOINT_URL_DYNAMODB": proxy.url})
        client = api.images("alice")
        data = images.noisy("JPEG")
        ticket = await client.create_upload("image/jpeg", size=len(data))
        await client.send(ticket, data)
        # Completion's publishing transaction fails on DynamoDB's side, every attempt.
        failing = proxy.fail(operation("TransactWriteItems"), status=500, times=None)

        with pytest.raises(ApiError) as refused:
            await client.complete(ticket.image_id)
        assert (refused.value.status, refused.value.details["backend"]) == (503, "dynamodb")
        assert (await client.get(ticket.image_id)).status == "pending"

        failing.times = failing.hits  # DynamoDB is back; the client retries
        await client.complete(ticket.image_id)
        image = await client.wait_until_processed(ticket.image_id)
        assert (image.status, image.size) == ("ready", len(data))
        assert await client.download(image.image_id) == data
    usage = emulator_client("dynamodb", moto_endpoint).get_item(
        TableName=api.settings.table,
        Key={"user_id": {"S": "alice"}, "image_id": {"S": "usage#totals"}},
    )["Item"]
    assert (usage["images"]["N"], usage["bytes"]["N"]) == ("1", str(len(data)))  # counted once


async def test_a_slow_backend_does_not_hold_up_calls_to_the_others(
    make_api: MakeApi, moto_endpoint: str
) -> None:
    async with FaultProxy(moto_endpoint) as proxy:
        api = await make_api(
            environment={"AWS_ENDPOINT_URL_S3": proxy.url},
            upload_burst=1000,
            upload_rate_per_minute=100_000,
        )
        # Many users (each user's completions at once are bounded well below the pool).
        users = [f"user-{n}" for n in range(MAX_POOL_CONNECTIONS + 16)]
        uploads = [await api.upload_url(user) for user in users]
        s3_reads = proxy.hold(lambda call: not call.target and call.method == "HEAD")
        stalled = [
            asyncio.create_task(api.call("POST", f"/images/{u['image_id']}/complete", user=user))
            for user, u in zip(users, uploads, strict=True)
        ]
        # Every S3 connection of the pool is now taken by a held call; the rest queue for one.
        await asyncio.wait_for(s3_reads.wait_for_hits(MAX_POOL_CONNECTIONS), timeout=20)

        # Bounded only so that a shared pool fails the test instead of hanging it.
        status, page, _ = await asyncio.wait_for(
            api.call("GET", "/images", user=users[0], params={"limit": "5"}), timeout=8
        )
        still_stalled = sum(not task.done() for task in stalled)
        s3_reads.release()
        answers = await asyncio.gather(*stalled)

    assert status == 200
    assert len(page["items"]) == 1  # its one upload, listed from DynamoDB while S3 hangs
    assert still_stalled == len(stalled)  # DynamoDB's pool is its own: it answered meanwhile
    assert {answer[0] for answer in answers} <= {409, 503}  # nothing was uploaded: no hang


async def test_two_completions_of_a_bad_upload_racing_both_get_its_refusal(
    make_api: MakeApi, moto_endpoint: str
) -> None:
    """As the API and S3's own upload event may: the first to read the upload is held back,
    the other refuses it and deletes it, and the held one then finds it gone. Both answers
    must be the refusal (it was a 503 "s3 is unavailable" for the loser)."""
    async with FaultProxy(moto_endpoint) as proxy:
        api = await make_api(environment={"AWS_ENDPOINT_URL_S3": proxy.url})
        upload = await api.upload_url()
        assert await api.send_to_s3(upload, images.HTML) == 200
        image_id = upload["image_id"]
        first_read = proxy.delay(s3("GET", image_id), 2.0, times=1)

        answers = await asyncio.gather(
            api.call("POST", f"/images/{image_id}/complete"),
            api.call("POST", f"/images/{image_id}/complete"),
        )

    assert first_read.hits == 1
    for status, body, _ in answers:
        assert (status, body["error"]["code"]) == (422, "content_mismatch")
    assert (await api.call("GET", f"/images/{image_id}"))[1]["status"] == "rejected"


async def test_a_job_taken_by_a_killed_workers_receive_waits_a_lease_not_a_visibility(
    make_api: MakeApi, moto_endpoint: str
) -> None:
    """A worker SIGKILLed while its long poll waits leaves that receive behind in SQS, which
    hands it the next job: hidden, for nobody. Received on a short lease (the full visibility
    only once a job starts), the job is back within the lease, before the visibility timeout."""
    api = await make_api(embedded_worker=False)
    visibility = api.settings.job_visibility_seconds  # the default, 20 s; the lease is 10 s
    client = api.images("alice")
    environment = api.child_environment()
    doomed = await Program.start("worker", env=environment)
    await doomed.wait_for_line(lambda line: "worker polling" in line)
    await asyncio.sleep(1)  # its receive is waiting on the queue
    await doomed.kill()

    ticket = await client.create_upload("image/jpeg")
    await client.send(ticket, images.jpeg())
    await client.complete(ticket.image_id)
    sqs = emulator_client("sqs", moto_endpoint)
    queue_url = sqs.get_queue_url(QueueName=api.settings.queue_name)["QueueUrl"]
    async with asyncio.timeout(10):
        while True:  # the premise: the abandoned receive took the job
            counts = sqs.get_queue_attributes(
                QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
            )["Attributes"]
            if counts["ApproximateNumberOfMessagesNotVisible"] == "1":
                break
            await asyncio.sleep(0.05)

    # Before the visibility timeout would have let the job go.
    worker = await Program.start("worker", env=environment)
    try:
        image = await client.wait_until_processed(ticket.image_id, max_wait=visibility - 2)
    finally:
        await worker.stop()
    assert image.status == "ready"
