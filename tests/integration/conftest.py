"""The server tier's fixtures: one real moto server per test process, LocalStack's S3 for the
modules that need signatures checked, a fresh bucket, table and queue per test, the API built
by the same factory the program uses and reached over HTTP, and headless Chromium."""

from __future__ import annotations

import asyncio
import io
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest
from aiohttp import web_app
from aiohttp.test_utils import TestClient
from moto.server import ThreadedMotoServer
from playwright.async_api import Browser, async_playwright
from prometheus_client.parser import text_string_to_metric_families

from image_service.auth.tokens import issue_token
from image_service.client import ImageServiceClient
from image_service.programs.app import create_app
from image_service.programs.embedded import free_port, patch_moto_transactions
from image_service.settings import Settings
from image_service.storage.clients import provision
from tests import images
from tests.conftest import AWS_SECRET, JWT_SECRET, REGION
from tests.integration.receivers import Receiver, webhook_receiver
from tests.localstack import localstack
from tests.processes import PortTaken, Program, wait_for_port

PROCESSING_SECONDS = 30


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    port = free_port()
    patch_moto_transactions()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def localstack_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with localstack(tmp_path_factory.mktemp("localstack")) as endpoint:
        yield endpoint


@pytest.fixture(autouse=True)
def aws_environment(
    no_ambient_configuration: None, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str
) -> None:
    """Only the emulator is reachable (the root conftest cleared the rest first)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)


@pytest.fixture(autouse=True)
def apps_are_freed_after_each_test() -> Iterator[None]:
    """aiohttp caches each app's middleware chain in a process-wide LRU of 1,024 entries keyed
    on the app, so every test's app -- and its botocore clients and their service models, some
    50,000 objects -- stayed alive: the suite grew past 1.5 GB and spent a third of its CPU in
    the garbage collector. One app per process, as the service runs, never notices. The cache
    is private; without it there is nothing to clear."""
    yield
    cached = getattr(web_app, "_cached_build_middleware", None)
    if cached is not None:
        cached.cache_clear()


@dataclass
class Clock:
    """The service's clock; follows real time until a test pins it."""

    pinned: datetime | None = None

    def __call__(self) -> datetime:
        return self.pinned or datetime.now(UTC)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, by (name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(http: aiohttp.ClientSession, url: str) -> Samples:
    async with http.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return samples(await response.text())


def emulator_client(service: str, endpoint: str) -> Any:
    """A plain boto3 client on an emulator, for checking what is really stored."""
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
    )


def token(user: str, *, admin: bool = False, ttl: int = 600) -> str:
    return issue_token(JWT_SECRET, user, admin=admin, ttl_seconds=ttl)


def auth(user: str, *, admin: bool = False) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(user, admin=admin)}"}


@dataclass
class Api:
    """The service under test, over HTTP, plus a raw S3 view for assertions."""

    client: TestClient[Any, Any]
    settings: Settings
    clock: Clock
    s3: Any  # a boto3 client on the emulator, for checking what is really stored
    http: aiohttp.ClientSession
    statuses: list[int] = field(default_factory=list)

    async def call(
        self,
        method: str,
        path: str,
        *,
        user: str | None = "alice",
        admin: bool = False,
        **kwargs: Any,
    ) -> tuple[int, Any, Any]:
        headers = dict(kwargs.pop("headers", {}))
        if user is not None:
            headers.update(auth(user, admin=admin))
        async with self.client.request(method, path, headers=headers, **kwargs) as response:
            body = await response.json() if response.content_type == "application/json" else None
            return response.status, body, response.headers

    async def upload_url(self, user: str = "alice", **body: Any) -> dict[str, Any]:
        body.setdefault("content_type", "image/jpeg")
        status, payload, _ = await self.call("POST", "/images/upload", user=user, json=body)
        assert status == 201, payload
        return payload  # type: ignore[no-any-return]

    async def send_to_s3(self, upload: dict[str, Any], data: bytes, **header_overrides: str) -> int:
        """Uploads straight to S3 exactly as a client would, following the API's instructions."""
        if upload["method"] == "POST":
            form = aiohttp.FormData()
            for name, value in upload["fields"].items():
                form.add_field(name, value)
            form.add_field("file", data, filename="upload", content_type="application/octet-stream")
            async with self.http.post(upload["upload_url"], data=form) as response:
                return response.status
        headers = {**upload["headers"], **header_overrides}
        headers.pop("Content-Length", None)  # aiohttp sets the real length of `data` itself
        async with self.http.put(upload["upload_url"], data=data, headers=headers) as response:
            return response.status

    async def send_part(self, part: dict[str, Any], data: bytes, part_size: int) -> int:
        """PUTs one part of ``data`` to its presigned URL, as the API said to."""
        start = (part["part_number"] - 1) * part_size
        headers = {k: v for k, v in part["headers"].items() if k != "Content-Length"}
        chunk = data[start : start + part["size"]]
        async with self.http.put(part["url"], data=io.BytesIO(chunk), headers=headers) as response:
            return response.status

    async def send_parts(
        self, parts: list[dict[str, Any]], data: bytes, part_size: int
    ) -> list[int]:
        """Every listed part at once, as a client uploading in parallel would."""
        return list(
            await asyncio.gather(*(self.send_part(part, data, part_size) for part in parts))
        )

    async def ready_images(self, count: int = 1, user: str = "alice", **body: Any) -> list[str]:
        """``count`` JPEGs uploaded, completed and processed: their ids, in upload order."""
        made = []
        for _ in range(count):
            upload, status, image = await self.upload(images.jpeg(), user=user, **body)
            assert (status, image["status"]) == (200, "ready")
            made.append(upload["image_id"])
        return made

    async def upload(
        self, data: bytes, user: str = "alice", **body: Any
    ) -> tuple[dict[str, Any], int, Any]:
        """Upload URL, PUT, complete, then wait for processing: the whole client flow.
        Returns (upload, status of complete, the image once processed or the error)."""
        upload = await self.upload_url(user, **body)
        assert await self.send_to_s3(upload, data) in (200, 204)
        status, payload, _ = await self.call(
            "POST", f"/images/{upload['image_id']}/complete", user=user
        )
        if status == 200:
            assert payload["status"] == "processing", payload
            payload = await self.processed(upload["image_id"], user=user)
        return upload, status, payload

    async def processed(self, image_id: str, user: str = "alice") -> dict[str, Any]:
        """The image once the worker is done with it, as a client polling would see it."""
        async with asyncio.timeout(PROCESSING_SECONDS):
            while True:
                status, image, _ = await self.call("GET", f"/images/{image_id}", user=user)
                assert status == 200, image
                if image["status"] not in {"fetching", "pending", "processing"}:
                    return image  # type: ignore[no-any-return]
                await asyncio.sleep(0.05)

    @property
    def url(self) -> str:
        """The API's base URL: a real server on loopback."""
        return str(self.client.make_url("")).rstrip("/")

    def images(self, user: str = "alice") -> ImageServiceClient:
        """The Python client, as `user`, on this API (sharing the test's connection pool)."""
        return ImageServiceClient(self.url, token(user), session=self.http)

    def child_environment(self, **settings: str) -> dict[str, str]:
        """The environment for an `image-service` process on this API's backends: none of the
        caller's IMAGE_SERVICE_* settings, this API's key and resources, then `settings`
        (names without the prefix)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGE_SERVICE_")}
        own = {
            "JWT_SECRET": self.settings.jwt_secret,
            "BUCKET": self.settings.bucket,
            "TABLE": self.settings.table,
            "QUEUE_NAME": self.settings.queue_name,
            "AWS_TRANSPORT": self.settings.aws_transport,
            **settings,
        }
        env.update({f"IMAGE_SERVICE_{name}": value for name, value in own.items()})
        return env

    async def metrics(self) -> Samples:
        """Every sample /metrics shows, by (name, sorted labels)."""
        return await scrape(self.http, f"{self.url}/metrics")

    def object_keys(self) -> list[str]:
        listing = self.s3.list_objects_v2(Bucket=self.settings.bucket)
        return sorted(item["Key"] for item in listing.get("Contents", []))


MakeApi = Callable[..., Awaitable[Api]]

# The two ways the service reaches DynamoDB and signs URLs (IMAGE_SERVICE_AWS_TRANSPORT). A
# module that sets BOTH_TRANSPORTS = True runs each of its tests that makes an API under both.
TRANSPORTS = ("aiobotocore", "direct")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    chosen = any(
        marker.args and marker.args[0] == "aws_transport"
        for marker in metafunc.definition.iter_markers("parametrize")
    )
    if getattr(metafunc.module, "BOTH_TRANSPORTS", False) and (
        "aws_transport" in metafunc.fixturenames and not chosen
    ):
        metafunc.parametrize("aws_transport", TRANSPORTS)


@pytest.fixture
def aws_transport() -> str:
    """The transport of the APIs a test makes: the default, unless the module says both."""
    return "aiobotocore"


@pytest.fixture
async def make_api(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    aws_transport: str,
) -> AsyncIterator[MakeApi]:
    sessions: list[aiohttp.ClientSession] = []

    async def make(
        *,
        provisioned: bool = True,
        environment: dict[str, str] | None = None,
        replica_of: Api | None = None,
        **overrides: Any,
    ) -> Api:
        """A fresh bucket and table; `environment` is set after provisioning, before start.
        `replica_of`: another replica of that API's deployment instead (its bucket, table and
        queue, nothing provisioned)."""
        if replica_of is not None:
            provisioned = False
            overrides = {
                "bucket": replica_of.settings.bucket,
                "table": replica_of.settings.table,
                "queue_name": replica_of.settings.queue_name,
                **overrides,
            }
        suffix = uuid.uuid4().hex[:12]
        values: dict[str, Any] = {
            "jwt_secret": JWT_SECRET,
            "bucket": f"images-{suffix}",
            "table": f"images-{suffix}",
            "queue_name": f"jobs-{suffix}",
            # The worker runs in the app, on the production defaults (its 20 s long poll too).
            "embedded_worker": True,
            # Completion is driven by the tests; the S3 event path has tests of its own.
            "s3_event_notifications": False,
            "aws_transport": aws_transport,
        }
        values.update(overrides)
        settings = Settings(**values)
        if provisioned:
            await provision(settings)
        for name, value in (environment or {}).items():
            monkeypatch.setenv(name, value)
        clock = Clock()
        client = await aiohttp_client(create_app(settings, clock=clock))
        http = aiohttp.ClientSession()
        sessions.append(http)
        s3 = emulator_client("s3", os.environ.get("AWS_ENDPOINT_URL_S3", moto_endpoint))
        return Api(client=client, settings=settings, clock=clock, s3=s3, http=http)

    yield make
    for session in sessions:
        await session.close()


@pytest.fixture
async def api(make_api: MakeApi) -> Api:
    return await make_api()


@pytest.fixture
async def dev_url() -> AsyncIterator[str]:
    """`image-service dev` as a user runs it (embedded moto), on a spare port: one that this
    very process holds (another of the suite's may take a port between probe and bind)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IMAGE_"))}
    for attempt in range(3):
        port = free_port()
        program = await Program.start("dev", "--port", str(port), env=environment)
        try:
            await wait_for_port(port, within=60, owner=program.process)
        except PortTaken:
            await program.kill()
            if attempt == 2:
                raise
            continue
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            await program.stop()
        return


# -- headless Chromium (Debian's, through Playwright's driver; no browser is downloaded) ----------

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(
    os.environ.get("TEST_ARTIFACTS_DIR", Path(__file__).resolve().parents[2] / "test-artifacts")
)
# Chromium as root in a sandbox-less container, and none of its calls home (refused here).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def chromium() -> str:
    # Failing, not skipping: a skipped browser test would pass CI with the page broken.
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `make test` installs Debian's chromium"
    return CHROMIUM


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A webhook receiver on loopback (``receivers.py``)."""
    async with webhook_receiver() as state:
        yield state
