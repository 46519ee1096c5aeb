"""`image-service reprocess [--apply]`: ready images brought up to processing that changed since
they were made ready (photo metadata an older version did not read, variants added or dropped,
GPS no longer kept), by the real command and real workers against moto, while they stay
served."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
from PIL import Image

from image_service.domain.workers import DEFER_SECONDS
from image_service.programs.embedded import free_port
from image_service.programs.services import processing_policy
from image_service.settings import Settings
from tests import images
from tests.faults import FaultProxy, operation
from tests.integration.cdn import distribution, purged, rendition_paths
from tests.integration.conftest import (
    PROCESSING_SECONDS,
    Api,
    MakeApi,
    emulator_client,
    scrape,
)
from tests.processes import Program, run_command, wait_for_port


async def _ready(api: Api, data: bytes, user: str = "alice", **body: Any) -> dict[str, Any]:
    _, status, image = await api.upload(data, user=user, **body)
    assert (status, image["status"]) == (200, "ready"), image
    return image  # type: ignore[no-any-return]


def _item(api: Api, moto_endpoint: str, image_id: str, owner: str = "alice") -> dict[str, Any]:
    dynamodb = emulator_client("dynamodb", moto_endpoint)
    key = {"user_id": {"S": owner}, "image_id": {"S": image_id}}
    item: dict[str, Any] = dynamodb.get_item(TableName=api.settings.table, Key=key)["Item"]
    return item


def _variant_keys(api: Api, moto_endpoint: str, image_id: str) -> set[str]:
    variants = _item(api, moto_endpoint, image_id)["variants"]["L"]
    return {variant["M"]["key"]["S"] for variant in variants}


async def _until(
    api: Api,
    image_id: str,
    done: Any,
    user: str = "alice",
    *,
    within: float = PROCESSING_SECONDS,
) -> dict[str, Any]:
    """The image once ``done(image)`` holds, as its owner would see it by polling."""
    async with asyncio.timeout(within):
        while True:
            status, image, _ = await api.call("GET", f"/images/{image_id}", user=user)
            assert status == 200, image
            if done(image):
                return image  # type: ignore[no-any-return]
            await asyncio.sleep(0.1)


async def test_images_made_ready_before_photo_metadata_get_it_while_served(
    make_api: MakeApi, moto_endpoint: str
) -> None:
    # Behind CloudFront: each reprocessed image's renditions are purged.
    cloudfront, distribution_id = await asyncio.to_thread(distribution, moto_endpoint)
    api = await make_api(cdn="cloudfront", cdn_distribution_id=distribution_id)
    ready = [await _ready(api, images.camera_jpeg()) for _ in range(4)]
    bobs = await _ready(api, images.camera_jpeg(), user="bob")
    dynamodb = emulator_client("dynamodb", moto_endpoint)
    for image in [*ready, bobs]:  # as an earlier version stored them: no photo metadata
        key = {"user_id": {"S": image["user_id"]}, "image_id": {"S": image["image_id"]}}
        dynamodb.update_item(
            TableName=api.settings.table,
            Key=key,
            UpdateExpression="REMOVE photo, thumbhash, processed_with",
        )
    trashed = ready.pop()
    assert (await api.call("DELETE", f"/images/{trashed['image_id']}"))[0] == 204
    env = api.child_environment()

    # A dry run names what it would queue (ready images only, of the one owner asked about)
    # and changes nothing.
    code, out, _ = await run_command("reprocess", "--user", "alice", env=env)
    assert code == 0, out
    assert sorted(out.splitlines()[:-1]) == sorted(
        f"would queue: alice/{image['image_id']}" for image in ready
    )
    assert out.splitlines()[-1].startswith("would queue 3 images for processing as ")
    assert (await api.call("GET", f"/images/{ready[0]['image_id']}"))[1]["photo"] is None

    # Applied on the live service: meanwhile the images stay ready and downloadable, the
    # owner retags one, and a fresh upload is processed as usual.
    reprocessing = asyncio.create_task(run_command("reprocess", "--apply", env=env))
    fresh = asyncio.create_task(_ready(api, images.jpeg()))
    retag = await api.call("PATCH", f"/images/{ready[1]['image_id']}", json={"tags": ["kept"]})
    assert retag[0] == 200
    while not reprocessing.done():
        for image in ready:
            status, body, _ = await api.call("GET", f"/images/{image['image_id']}/download")
            assert status == 200, body
            async with api.http.get(body["download_url"]) as response:
                assert response.status == 200
        await asyncio.sleep(0.05)
    code, out, _ = await reprocessing
    assert code == 0, out
    assert "queued 4 images" in out  # alice's three and bob's
    assert (await fresh)["photo"] is None  # a plain JPEG: processed, no camera to tell of

    for image in [*ready, bobs]:
        done = await _until(api, image["image_id"], lambda i: i["photo"], user=image["user_id"])
        assert done["status"] == "ready"
        assert done["photo"]["camera"] == "Fujifilm X-T5"
        assert done["thumbhash"]
        assert done["variants"] == image["variants"]
    assert (await api.call("GET", f"/images/{ready[1]['image_id']}"))[1]["tags"] == ["kept"]
    status, still_trashed, _ = await api.call("GET", "/images", params={"status": "trashed"})
    assert [i["photo"] for i in still_trashed["items"]] == [None]  # left in the trash as it was

    code, out, _ = await run_command("reprocess", env=env)  # nothing left to do
    assert out.splitlines()[0].startswith("would queue 0 images"), out
    # The trash, then each of the four reprocessed: a purge of exactly its paths.
    purges = await purged(cloudfront, distribution_id, 5)
    assert sorted(purges) == sorted(
        rendition_paths(image["user_id"], image["image_id"]) for image in [trashed, *ready, bobs]
    )

    # --all: processed again though up to date (after a fix in an imaging library, say).
    def revision_of_bobs() -> int:
        return int(_item(api, moto_endpoint, bobs["image_id"], "bob")["revision"]["N"])

    revision = revision_of_bobs()
    code, out, _ = await run_command("reprocess", "--apply", "--all", "--user", "bob", env=env)
    first, last = out.splitlines()
    assert first == f"queued: bob/{bobs['image_id']}"
    assert last.startswith("queued 1 images"), out
    async with asyncio.timeout(PROCESSING_SECONDS):
        while revision_of_bobs() == revision:  # noqa: ASYNC110  # a DynamoDB item has no event to await
            await asyncio.sleep(0.1)


def _gps_of(data: bytes) -> dict[int, Any]:
    with Image.open(io.BytesIO(data)) as image:
        return dict(image.getexif().get_ifd(0x8825))


@pytest.mark.long
async def test_changed_processing_settings_reach_the_images_already_ready(
    make_api: MakeApi, moto_endpoint: str
) -> None:
    """The operator drops a variant, adds two, and stops keeping GPS: reprocessing renders the
    new variants, deletes the dropped one's objects and removes GPS from the originals kept
    with it, never leaving more than ``--backlog`` jobs waiting ahead of fresh uploads (each
    this test's subject)."""
    api = await make_api(embedded_worker=False)
    before = api.child_environment(VARIANTS="thumb:128", KEEP_GPS="true")
    worker = await Program.start("worker", env=before)
    try:
        ready = [await _ready(api, images.camera_jpeg()) for _ in range(5)]
    finally:
        await worker.stop()
    image = ready[0]
    original = _item(api, moto_endpoint, image["image_id"])["s3_key"]["S"]
    assert [v["name"] for v in image["variants"]] == ["thumb", "thumb"]  # jpeg and webp
    assert image["photo"]["gps"] is not None
    stored = api.s3.get_object(Bucket=api.settings.bucket, Key=original)["Body"].read()
    assert _gps_of(stored)
    thumbs = set().union(*(_variant_keys(api, moto_endpoint, i["image_id"]) for i in ready))

    # No worker yet: the command queues up to two and waits for room. (The stopped worker's
    # last long poll may still be open at SQS and take the first job, as on AWS: one more then.)
    after = api.child_environment(VARIANTS="small:64,medium:256", KEEP_GPS="false")
    command = await Program.start("reprocess", "--apply", "--backlog", "2", env=after)
    await command.wait_for_line(lambda line: line.startswith("queued: "))
    await asyncio.sleep(1)

    def queued() -> int:
        return sum(line.startswith("queued: ") for line in command.lines)

    held = queued()
    await asyncio.sleep(2)  # two looks at the full backlog
    assert queued() == held < len(ready)
    assert command.process.returncode is None
    sqs = emulator_client("sqs", moto_endpoint)
    url = sqs.get_queue_url(QueueName=api.settings.queue_name)["QueueUrl"]
    waiting = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    assert waiting["Attributes"]["ApproximateNumberOfMessages"] == "2"

    worker = await Program.start("worker", env=after)
    try:
        assert await command.wait(within=PROCESSING_SECONDS) == 0, command.output
        assert "queued 5 images" in command.output
        done = [
            await _until(api, i["image_id"], lambda i: i["photo"]["gps"] is None) for i in ready
        ]
    finally:
        await worker.stop()

    for image_now in done:
        assert sorted({v["name"] for v in image_now["variants"]}) == ["medium", "small"]
        assert {v["width"] for v in image_now["variants"] if v["name"] == "small"} == {64}
    keys = set(api.object_keys())
    assert not thumbs & keys, "the dropped variant's objects are gone"
    for image_now in done:
        assert _variant_keys(api, moto_endpoint, image_now["image_id"]) <= keys
    stripped = api.s3.get_object(Bucket=api.settings.bucket, Key=original)["Body"].read()
    assert _gps_of(stripped) == {}
    assert done[0]["sha256"] != image["sha256"]  # the original's bytes changed, and say so
    assert done[0]["size"] == len(stripped)
    # Nothing orphaned, nothing lost (judged at once: nothing else writes here).
    code, out, _ = await run_command("reconcile", "--grace-seconds", "0", env=after)
    assert code == 0, out
    # Up to date now: nothing is left to do, unless asked for everything.
    assert "would queue 0 images" in (await run_command("reprocess", env=after))[1]
    assert "would queue 5 images" in (await run_command("reprocess", "--all", env=after))[1]


async def test_a_reprocess_cut_short_by_an_outage_is_finished_by_the_next_run(
    make_api: MakeApi, moto_endpoint: str
) -> None:
    api = await make_api()
    ready = [await _ready(api, images.camera_jpeg()) for _ in range(3)]
    dynamodb = emulator_client("dynamodb", moto_endpoint)
    for image in ready:  # as an earlier version stored them
        key = {"user_id": {"S": "alice"}, "image_id": {"S": image["image_id"]}}
        dynamodb.update_item(
            TableName=api.settings.table, Key=key, UpdateExpression="REMOVE photo, processed_with"
        )
    async with FaultProxy(moto_endpoint) as proxy:
        proxy.fail(operation("SendMessage"), status=500, times=None)  # SQS refuses every job
        env = api.child_environment() | {"AWS_ENDPOINT_URL_SQS": proxy.url}
        code, out, err = await run_command("reprocess", "--apply", env=env)
    assert code == 2
    assert err.splitlines()[-1].startswith("reprocess stopped: sqs is unavailable"), err
    assert "run it again to resume" in err

    code, out, _ = await run_command("reprocess", "--apply", env=api.child_environment())
    assert code == 0, out
    assert "queued 3 images" in out
    for image in ready:
        await _until(api, image["image_id"], lambda i: i["photo"])


async def test_reprocess_refuses_an_owner_or_backlog_it_cannot_use(api: Api) -> None:
    env = api.child_environment()
    for argument in (("--user", ""), ("--user", "al\x1bice"), ("--user", "a" * 257)):
        code, _, err = await run_command("reprocess", *argument, env=env)
        assert (code, err.splitlines()[-1]) == (
            2,
            "image-service reprocess: error: argument --user: not an owner: empty, too long "
            "or unprintable",
        )
    for backlog in ("0", "-3", "many"):
        code, _, err = await run_command("reprocess", "--backlog", backlog, env=env)
        assert code == 2
        assert "argument --backlog" in err


@pytest.mark.long
async def test_mixed_settings_a_reprocess_is_refused_then_deferred_never_skipped(
    make_api: MakeApi, moto_endpoint: str
) -> None:
    """A rolling deploy, half done: workers on the old settings and on the new. The command
    refuses while an old one is live, naming it; and a job that reaches an old worker anyway
    (it started after the command looked) goes back on the queue for a new one, counted."""
    api = await make_api(embedded_worker=False)
    before = api.child_environment(VARIANTS="thumb:128")
    after = api.child_environment(VARIANTS="small:64")
    old_fingerprint = processing_policy(Settings(jwt_secret="x" * 40, variants=("thumb:128",)))
    old = await Program.start("worker", env=before)
    new: Program | None = None
    try:
        ready = [await _ready(api, images.jpeg()) for _ in range(3)]
        new = await Program.start("worker", env=after)
        await new.wait_for_line(lambda line: "worker polling" in line)

        code, out, err = await run_command("reprocess", "--apply", env=after)
        assert code == 3, out + err
        refusal, *named = err.strip().splitlines()
        assert refusal.startswith("reprocess refused: 1 live worker(s) run other settings")
        assert len(named) == 1  # the old worker, not the new
        assert f"settings {old_fingerprint.fingerprint}, last seen" in named[0]
        assert "queued" not in out

        await old.stop()  # gone: no longer a laggard
        await new.kill()  # dead, but live for LIVE_SECONDS: its settings are still run
        code, out, err = await run_command("reprocess", "--apply", env=after)
        assert code == 0, out + err
        assert "queued 3 images" in out
    finally:
        if old.process.returncode is None:
            await old.stop()
        if new is not None and new.process.returncode is None:
            await new.kill()

    # An old worker starts after the command looked: every job it gets, it puts back.
    port = free_port()
    late = await Program.start(
        "worker", env=before | {"IMAGE_SERVICE_WORKER_METRICS_PORT": str(port)}
    )
    fresh: Program | None = None
    try:
        await wait_for_port(port, owner=late.process)
        async with asyncio.timeout(PROCESSING_SECONDS):
            while True:
                figures = await scrape(api.http, f"http://127.0.0.1:{port}/metrics")
                if figures[("image_service_worker_jobs_deferred_total", ())] >= 3:
                    break
                await asyncio.sleep(0.2)
        for image in ready:  # none skipped: each is as the old settings made it, waiting
            _, now, _ = await api.call("GET", f"/images/{image['image_id']}")
            assert {v["name"] for v in now["variants"]} == {"thumb"}
        # The deploy completes: the old worker stops, and one on the new settings takes the
        # jobs when they come back.
        await late.stop()
        fresh = await Program.start("worker", env=after)
        for image in ready:
            await _until(
                api,
                image["image_id"],
                lambda i: {v["name"] for v in i["variants"]} == {"small"},
                within=DEFER_SECONDS + PROCESSING_SECONDS,
            )
    finally:
        if late.process.returncode is None:
            await late.stop()
        if fresh is not None:
            await fresh.stop()
