"""The processing pipeline end to end, through the real queue (moto's SQS) and the worker that
runs inside the app: S3 events, redelivery, poison jobs, GPS removal, scanners that deny, fail
or are down."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from PIL import Image

from image_service.programs.embedded import free_port
from tests import images
from tests.clamav import clamd
from tests.integration.conftest import Api, MakeApi, emulator_client
from tests.waiting import until

QUEUE_SECONDS = 30


def _sqs(moto_endpoint: str) -> Any:
    return emulator_client("sqs", moto_endpoint)


async def _queue_drained(sqs: Any, queue_url: str) -> None:
    """Waits until no message is waiting or being worked on."""
    async with asyncio.timeout(QUEUE_SECONDS):
        while True:
            attributes = sqs.get_queue_attributes(
                QueueUrl=queue_url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )["Attributes"]
            if attributes == {
                "ApproximateNumberOfMessages": "0",
                "ApproximateNumberOfMessagesNotVisible": "0",
            }:
                return
            await asyncio.sleep(0.1)


def _scan_data(jpeg: bytes) -> bytes:
    return jpeg[jpeg.index(b"\xff\xda") :]


async def test_an_upload_never_completed_is_processed_from_the_s3_event(make_api: MakeApi) -> None:
    api = await make_api(s3_event_notifications=True)
    upload = await api.upload_url(content_type="image/png")
    assert await api.send_to_s3(upload, images.png(300, 200)) == 200
    # No call to /complete: S3's notification reaches the queue and the worker completes it.
    image = await api.processed(upload["image_id"])
    assert image["status"] == "ready"
    assert {(v["name"], v["width"]) for v in image["variants"]} >= {("thumb", 256), ("medium", 300)}


async def test_a_rejected_upload_from_the_s3_event_stays_rejected(make_api: MakeApi) -> None:
    api = await make_api(s3_event_notifications=True)
    upload = await api.upload_url(content_type="image/png")
    assert await api.send_to_s3(upload, images.HTML, **{"Content-Type": "image/png"}) == 200
    image = await api.processed(upload["image_id"])
    assert image["status"] == "rejected"
    # The refusal is recorded first, then what arrived is removed (domain/completion.py).
    await until(lambda: api.object_keys() == [], within=5)


async def test_redelivered_jobs_give_one_result(api: Api, moto_endpoint: str) -> None:
    upload, status, ready = await api.upload(images.jpeg(640, 480))
    assert (status, ready["status"]) == (200, "ready")
    keys = api.object_keys()
    sqs = _sqs(moto_endpoint)
    queue_url = sqs.get_queue_url(QueueName=api.settings.queue_name)["QueueUrl"]
    job = {"type": "process", "user_id": "alice", "image_id": upload["image_id"]}
    for _ in range(3):
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(job))
    status, again, _ = await api.call("POST", f"/images/{upload['image_id']}/complete")
    assert (status, again) == (200, ready), "completing a ready image changes nothing"
    await _queue_drained(sqs, queue_url)
    status, after, _ = await api.call("GET", f"/images/{upload['image_id']}")
    assert after == ready, "the record is exactly as the first run left it"
    assert api.object_keys() == keys, "no duplicate variants"


async def test_a_poison_job_ends_in_the_dead_letter_queue(
    make_api: MakeApi, moto_endpoint: str
) -> None:
    api = await make_api(job_max_receives=2)
    sqs = _sqs(moto_endpoint)
    queue_url = sqs.get_queue_url(QueueName=api.settings.queue_name)["QueueUrl"]
    dlq_url = sqs.get_queue_url(QueueName=f"{api.settings.queue_name}-dlq")["QueueUrl"]
    sqs.send_message(QueueUrl=queue_url, MessageBody="{not json")
    async with asyncio.timeout(QUEUE_SECONDS):
        while True:
            # Short polls and a yield: the worker shares this event loop.
            dead = sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=0).get("Messages", [])
            if dead:
                break
            await asyncio.sleep(0.2)
    assert dead[0]["Body"] == "{not json"
    # The worker goes on with good jobs afterwards.
    _, status, image = await api.upload(images.png(), content_type="image/png")
    assert (status, image["status"]) == (200, "ready")


async def test_gps_is_removed_from_the_original_and_variants_carry_no_metadata(api: Api) -> None:
    original = images.jpeg_with_orientation_and_gps(300, 200, orientation=6)
    upload, status, image = await api.upload(original)
    assert (status, image["status"]) == (200, "ready")
    stored = api.s3.get_object(
        Bucket=api.settings.bucket, Key=f"images/alice/{upload['image_id']}/original"
    )["Body"].read()
    with Image.open(io.BytesIO(stored)) as served:
        exif = served.getexif()
        assert not exif.get_ifd(0x8825), "no GPS left"
        assert exif[0x0112] == 6
    assert _scan_data(stored) == _scan_data(original), "the pixels were not re-encoded"
    assert image["sha256"] != upload.get("sha256"), "the record describes the stored original"
    assert image["size"] == len(stored)
    displayed = {"thumb": (171, 256), "medium": (200, 300)}  # portrait once oriented
    for variant in image["variants"]:
        assert (variant["width"], variant["height"]) == displayed[variant["name"]]
        extension = {"jpeg": "jpg", "webp": "webp"}[variant["format"]]
        key = f"images/alice/{upload['image_id']}/{variant['name']}.{extension}"
        data = api.s3.get_object(Bucket=api.settings.bucket, Key=key)["Body"].read()
        assert b"Exif" not in data
        assert b"ExampleCam" not in data


async def test_gps_is_kept_when_configured(make_api: MakeApi) -> None:
    api = await make_api(keep_gps=True)
    original = images.jpeg_with_orientation_and_gps()
    upload, _, image = await api.upload(original)
    assert image["status"] == "ready"
    stored = api.s3.get_object(
        Bucket=api.settings.bucket, Key=f"images/alice/{upload['image_id']}/original"
    )["Body"].read()
    assert stored == original


# -- scanners --------------------------------------------------------------------------------------


class Moderator:
    """A moderation webhook that fetches the image through the URL it is sent, then decides."""

    def __init__(self, decision: str) -> None:
        self.decision = decision
        self.seen: list[bytes] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        async with request.app["http"].get(body["url"]) as response:
            assert response.status == 200
            self.seen.append(await response.read())
        return web.json_response({"decision": self.decision, "reason": "test says so"})


async def _moderator(
    aiohttp_server: Callable[..., Awaitable[TestServer]], decision: str
) -> tuple[Moderator, str]:
    import aiohttp

    moderator = Moderator(decision)
    app = web.Application()

    async def http_session(app: web.Application) -> Any:
        async with aiohttp.ClientSession() as session:
            app["http"] = session
            yield

    app.cleanup_ctx.append(http_session)
    app.router.add_post("/moderate", moderator.handle)
    server = await aiohttp_server(app)
    return moderator, str(server.make_url("/moderate"))


@pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")
async def test_the_moderation_webhook_sees_the_image_and_allows_it(
    make_api: MakeApi, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> None:
    moderator, url = await _moderator(aiohttp_server, "allow")
    api = await make_api(moderation_webhook_url=url)
    data = images.png()
    _, _, image = await api.upload(data, content_type="image/png")
    assert image["status"] == "ready"
    assert moderator.seen == [data]


@pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")
async def test_a_denial_quarantines_the_image(
    make_api: MakeApi, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> None:
    _, url = await _moderator(aiohttp_server, "deny")
    api = await make_api(moderation_webhook_url=url)
    upload, status, image = await api.upload(images.png(), content_type="image/png")
    assert (status, image["status"], image["variants"]) == (200, "quarantined", [])
    assert api.object_keys() == [f"quarantine/alice/{upload['image_id']}/original"]
    status, body, _ = await api.call("GET", f"/images/{upload['image_id']}/download")
    assert (status, body["error"]["code"]) == (409, "image_not_ready")
    status, page, _ = await api.call("GET", "/images", params={"status": "quarantined"})
    assert [item["image_id"] for item in page["items"]] == [upload["image_id"]]
    status, _, _ = await api.call(
        "DELETE", f"/images/{upload['image_id']}", params={"permanent": "true"}
    )
    assert (status, api.object_keys()) == (204, [])


@pytest.mark.parametrize("scanner", ["moderation", "clamav"])
async def test_a_scanner_that_is_down_never_lets_an_image_become_ready(
    make_api: MakeApi, tmp_path: Path, scanner: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing listens at either address: the scanner is down.
    settings = (
        {"moderation_webhook_url": f"http://127.0.0.1:{free_port()}/moderate"}
        if scanner == "moderation"
        else {"clamd_address": f"unix:{tmp_path / 'no-clamd.sock'}"}
    )
    api = await make_api(**settings)
    caplog.set_level("WARNING", logger="image_service.worker.loop")
    upload = await api.upload_url(content_type="image/png")
    assert await api.send_to_s3(upload, images.png()) == 200
    status, image, _ = await api.call("POST", f"/images/{upload['image_id']}/complete")
    assert (status, image["status"]) == (200, "processing")
    # The worker tried the scan, failed closed, and will retry later.
    async with asyncio.timeout(QUEUE_SECONDS):
        while not [r for r in caplog.records if "failed (try 1" in r.getMessage()]:  # noqa: ASYNC110  # a log record has no event to await
            await asyncio.sleep(0.05)
    status, image, _ = await api.call("GET", f"/images/{upload['image_id']}")
    assert (image["status"], image["variants"]) == ("processing", [])
    status, body, _ = await api.call("GET", f"/images/{upload['image_id']}/download")
    assert (status, body["error"]["code"]) == (409, "image_not_ready")


INFECTED = images.encode("PNG", 40, 40, (1, 2, 3))


@pytest.fixture(scope="module")
def clamd_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with clamd(tmp_path_factory.mktemp("clamd"), INFECTED) as address:
        yield address


async def test_clamav_passes_clean_images_and_quarantines_detections(
    make_api: MakeApi, clamd_address: str
) -> None:
    api = await make_api(clamd_address=clamd_address)
    _, status, clean = await api.upload(images.png(), content_type="image/png")
    assert (status, clean["status"]) == (200, "ready")

    upload, status, flagged = await api.upload(INFECTED, content_type="image/png")
    assert (status, flagged["status"]) == (200, "quarantined")
    assert f"quarantine/alice/{upload['image_id']}/original" in api.object_keys()
    assert not [k for k in api.object_keys() if k.startswith(f"images/alice/{upload['image_id']}/")]
    status, body, _ = await api.call("GET", f"/images/{upload['image_id']}/download")
    assert (status, body["error"]["code"]) == (409, "image_not_ready")


class SlowModerator(Moderator):
    """Takes longer to answer than a job stays hidden: without extension it would run twice."""

    def __init__(self, seconds: float) -> None:
        super().__init__("allow")
        self.seconds = seconds
        self.calls = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        await asyncio.sleep(self.seconds)
        return web.json_response({"decision": "allow"})


async def test_long_jobs_stay_hidden_while_they_run(
    make_api: MakeApi, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> None:
    moderator = SlowModerator(seconds=3.5)
    app = web.Application()
    app.router.add_post("/moderate", moderator.handle)
    server = await aiohttp_server(app)
    api = await make_api(
        moderation_webhook_url=str(server.make_url("/moderate")), job_visibility_seconds=2
    )
    _, status, image = await api.upload(images.png(), content_type="image/png")
    assert (status, image["status"]) == (200, "ready")
    assert moderator.calls == 1, "the visibility was extended, so no second delivery ran"


async def test_the_worker_command_processes_jobs_and_stops_on_sigterm(
    make_api: MakeApi, moto_endpoint: str
) -> None:
    api = await make_api(embedded_worker=False)
    upload = await api.upload_url(content_type="image/png")
    assert await api.send_to_s3(upload, images.png()) == 200
    status, image, _ = await api.call("POST", f"/images/{upload['image_id']}/complete")
    assert (status, image["status"]) == (200, "processing")

    env = api.child_environment()
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "image_service.programs.cli",
        "worker",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert (await api.processed(upload["image_id"]))["status"] == "ready"
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(worker.communicate(), timeout=30)
    assert worker.returncode == 0, output.decode()
    assert b"worker stopped" in output


async def test_racing_completions_all_get_the_one_result(make_api: MakeApi) -> None:
    """S3's event and several client retries complete the same upload at once: every caller
    gets the image, and it is processed once."""
    api = await make_api(s3_event_notifications=True)
    for _ in range(3):
        upload = await api.upload_url(content_type="image/png")
        assert await api.send_to_s3(upload, images.png()) == 200
        path = f"/images/{upload['image_id']}/complete"
        answers = await asyncio.gather(*(api.call("POST", path) for _ in range(4)))
        assert {status for status, _, _ in answers} == {200}, [a[1] for a in answers]
        assert (await api.processed(upload["image_id"]))["status"] == "ready"
    _, page, _ = await api.call("GET", "/images")
    assert [item["status"] for item in page["items"]] == ["ready"] * 3


class HoldingModerator:
    """Holds each image until the test lets it go: a window in which the owner edits it."""

    def __init__(self) -> None:
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.holding.set()
        await self.release.wait()
        return web.json_response({"decision": "allow"})


async def test_an_edit_made_while_the_image_is_processed_is_kept(
    make_api: MakeApi, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> None:
    """The worker publishes its result over a record the owner changed meanwhile: the owner's
    tags and description stand, and listing by tag agrees with the image."""
    moderator = HoldingModerator()
    app = web.Application()
    app.router.add_post("/moderate", moderator.handle)
    server = await aiohttp_server(app)
    api = await make_api(moderation_webhook_url=str(server.make_url("/moderate")))
    upload = await api.upload_url(content_type="image/png", tags=["draft"])
    image_id = upload["image_id"]
    assert await api.send_to_s3(upload, images.png()) == 200
    status, _, _ = await api.call("POST", f"/images/{image_id}/complete")
    assert status == 200
    await asyncio.wait_for(moderator.holding.wait(), QUEUE_SECONDS)

    edit = {"tags": ["final", "cats"], "description": "edited during processing"}
    status, edited, _ = await api.call("PATCH", f"/images/{image_id}", json=edit)
    assert (status, edited["status"]) == (200, "processing")
    moderator.release.set()

    image = await api.processed(image_id)
    assert (image["status"], image["tags"], image["description"]) == (
        "ready",
        ["final", "cats"],
        "edited during processing",
    )
    assert image["variants"], "the worker's result is there too"
    for tag, listed in (("final", [image_id]), ("cats", [image_id]), ("draft", [])):
        status, page, _ = await api.call("GET", "/images", params={"tag": tag})
        assert [item["image_id"] for item in page["items"]] == listed, tag
        assert all(item == image for item in page["items"]), "a tag's listing shows the image"


@pytest.mark.long
async def test_after_a_quiet_spell_longer_than_a_long_poll_an_upload_is_ready_promptly(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """On the production queue wait (20 s), a receive on an idle queue must neither time out nor
    be abandoned: SQS would hand an abandoned receive the next job, which would then sit hidden
    for the whole visibility timeout before anyone saw it."""
    assert api.settings.queue_wait_seconds == 20  # the default, as users run it
    caplog.set_level("WARNING", logger="image_service")
    await asyncio.sleep(api.settings.queue_wait_seconds + 5)  # idle past one whole long poll

    upload = await api.upload_url(content_type="image/png")
    assert await api.send_to_s3(upload, images.png()) == 200
    status, _, _ = await api.call("POST", f"/images/{upload['image_id']}/complete")
    assert status == 200
    # Well inside the receive lease (10 s): a job lost to an abandoned receive waits all of it.
    async with asyncio.timeout(5):
        assert (await api.processed(upload["image_id"]))["status"] == "ready"
    assert not [r.getMessage() for r in caplog.records if "receiving jobs failed" in r.getMessage()]


class FlakyModerator(Moderator):
    """Down (503) for its first ``down_for`` seconds, then allows."""

    def __init__(self, down_for: float) -> None:
        super().__init__("allow")
        self.up_at = asyncio.get_running_loop().time() + down_for
        self.calls: list[int] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append(503 if asyncio.get_running_loop().time() < self.up_at else 200)
        if self.calls[-1] == 503:
            return web.json_response({"error": "down"}, status=503)
        return web.json_response({"decision": "allow"})


async def test_an_image_held_up_by_a_scanner_outage_is_ready_soon_after_it_ends(
    make_api: MakeApi, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> None:
    """The moderation webhook is down for 8 s: the image stays processing meanwhile, and its
    retries (backing off 2 s, 4 s, 8 s) reach the webhook once it is back; none is swallowed
    by a receive nobody hears (each would hide it for a whole visibility timeout)."""
    moderator = FlakyModerator(down_for=8)
    app = web.Application()
    app.router.add_post("/moderate", moderator.handle)
    api = await make_api(
        moderation_webhook_url=str((await aiohttp_server(app)).make_url("/moderate"))
    )
    upload = await api.upload_url(content_type="image/png")
    assert await api.send_to_s3(upload, images.png()) == 200
    assert (await api.call("POST", f"/images/{upload['image_id']}/complete"))[0] == 200

    # Retried on backoff (2 s, 4 s, 8 s): ready on the first try after the webhook is back,
    # within the 30 s `processed` waits, far within one visibility timeout.
    image = await api.processed(upload["image_id"])
    assert image["status"] == "ready"
    assert moderator.calls[-1] == 200
    assert 503 in moderator.calls
