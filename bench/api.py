"""API cost per request: this service against the original design, same load, same run.

Starts moto's server (bench/moto_server.py), this service twice (`image-service serve`, one
process each: the default aiobotocore transport, and `IMAGE_SERVICE_AWS_TRANSPORT=direct`) and
the baseline (bench/baseline_app.py: FastAPI + sync boto3 under uvicorn, one process), then
drives each with the same requests at 1, 16 and 64 concurrent connections:

- `POST /images/upload` (an upload URL),
- `GET /images` (a page of 20),
- `GET /images/{id}` (one image's metadata),
- `GET /images/{id}/download` (a presigned GET of a stored image),
- `POST /images/{id}/complete` (this service only: the original had no completion), each
  request completing an upload of a 1 MP JPEG made for it beforehand; most of its cost is the
  full decode, whose share is printed beside it;
- `GET /s/{token}` (this service only: the original had no share links): a link to an album
  of 50 ready images, answered with a signed URL per image and preset, no token.

Prints per endpoint and server: requests per second, CPU microseconds per request (the server
process's user + system CPU time over the phase, divided by its requests), p50/p99 latency and
RSS after the phase; then the ratios at each concurrency, for both transports. Targets on the
default transport: the upload URL at most 25 % of the baseline's CPU per request at 16 and 64
connections, reads at most 80 %; on the direct one, reads at most 50 %; at most 150 MB RSS per
API process at 64 connections.

The servers are measured alike: each on core 0 (one at a time: their phases alternate), moto
and the load generator on core 1, and each logging as it does by default (uvicorn's access log
for the baseline, the service's JSON access line). Requests per second are bounded by moto, so
CPU per request is the figure that compares the servers. moto is served keeping connections
alive, as AWS does; `--moto-closes-connections` serves it with its own server, which opens a
connection per call for both servers (bench/moto_server.py).

    .venv/bin/python -m bench.api [--requests 3000] [--concurrency 1,16,64]
        [--moto-closes-connections]

At one connection a phase sends a fifth of the requests (each waits on the one before).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiohttp
import psutil
from aiohttp import web
from PIL import Image as PILImage

from bench.stack import AWS, BIN, process
from image_service.auth.tokens import issue_token
from image_service.domain.models import ImageRecord, ImageStatus
from image_service.imaging.inspect import InspectionLimits, inspect_image
from image_service.programs.embedded import free_port
from image_service.settings import Settings
from image_service.storage.clients import aws_clients, provision
from image_service.storage.dynamo import ImageRepository

SECRET = "bench-secret-" + uuid.uuid4().hex
USERS = [f"user{number:03d}" for number in range(64)]
UPLOAD_BODY: dict[str, object] = {
    "content_type": "image/jpeg",
    "tags": ["profile", "test"],
    "description": "bench",
}
SEEDED_PER_USER = 20
CPU_TARGET = 0.25
READ_CPU_TARGET = {"service": 0.8, "direct": 0.5}
# The cores: the servers under test on one, moto and this load generator on the other.
SERVER_CORE, LOAD_CORE = 0, 1
RSS_TARGET_MB = 150


@dataclass
class Phase:
    requests: int
    errors: dict[int, int]
    seconds: float
    cpu_seconds: float
    latencies: list[float]
    rss_mb: float

    @property
    def cpu_us(self) -> float:
        return 1e6 * self.cpu_seconds / self.requests

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def quantile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# One request of a phase: (method, path, json body or None, headers), by request number.
Request = Callable[[int], tuple[str, str, dict[str, object] | None, dict[str, str]]]


def _busy_seconds(processes: list[psutil.Process]) -> float:
    return sum(sum(process.cpu_times()[:2]) for process in processes)


async def drive(base: str, pid: int, request: Request, total: int, concurrency: int) -> Phase:
    # The server and, under `serve --workers N`, its API processes.
    server = psutil.Process(pid)
    processes = [server, *server.children(recursive=True)]
    errors: dict[int, int] = {}
    latencies: list[float] = []
    counter = iter(range(total))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client() -> None:
            for number in counter:
                method, path, body, headers = request(number)
                started = time.perf_counter()
                async with session.request(
                    method, base + path, json=body, headers=headers
                ) as response:
                    await response.read()
                    if response.status >= 400:
                        errors[response.status] = errors.get(response.status, 0) + 1
                latencies.append(time.perf_counter() - started)

        cpu = _busy_seconds(processes)
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        cpu_seconds = _busy_seconds(processes) - cpu
    return Phase(
        requests=total,
        errors=errors,
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        latencies=latencies,
        # The largest process: the target is per API process.
        rss_mb=max(process.memory_info().rss for process in processes) / 2**20,
    )


COMPLETE = "POST /images/{id}/complete"
SHARED = "GET /s/{token} (album of 50)"
SHARED_ALBUM_SIZE = 50


async def shared_album(base: str) -> str:
    """A share link to an album of one user's 50 seeded images, made through the API."""
    user = USERS[0]
    headers = {"Authorization": f"Bearer {issue_token(SECRET, user)}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.get(f"{base}/images?limit=100") as listed:
            image_ids = [image["image_id"] for image in (await listed.json())["items"]]
        assert len(image_ids) >= SHARED_ALBUM_SIZE, "seed at least a full album"
        async with session.post(f"{base}/albums", json={"name": "bench"}) as made:
            album_id = (await made.json())["album_id"]
        async with session.put(
            f"{base}/albums/{album_id}/images",
            json={"image_ids": image_ids[:SHARED_ALBUM_SIZE]},
        ) as added:
            assert set((await added.json())["results"].values()) == {"ok"}
        async with session.post(f"{base}/shares", json={"album_id": album_id}) as shared:
            url: str = (await shared.json())["url"]
    return url.rsplit("/", 1)[1]


def one_megapixel_jpeg() -> bytes:
    buffer = io.BytesIO()
    PILImage.effect_noise((1224, 816), 40).convert("RGB").save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


PHOTO = one_megapixel_jpeg()


async def completions(base: str, pid: int, requests: int, concurrency: int) -> Phase:
    """A phase of completions, each of an upload made (URL, PUT to moto) just before the phase,
    so that only the completions are measured."""
    total = max(concurrency, requests // (50 if concurrency == 1 else 10))
    tokens = {user: {"Authorization": f"Bearer {issue_token(SECRET, user)}"} for user in USERS}
    body = {"content_type": "image/jpeg", "size": len(PHOTO)}
    ready: list[tuple[str, str]] = []  # (user, image id), uploaded
    async with aiohttp.ClientSession() as session:

        async def prepare(number: int) -> None:
            user = USERS[number % len(USERS)]
            async with session.post(
                f"{base}/images/upload", json=body, headers=tokens[user]
            ) as response:
                upload = await response.json()
            headers = {k: v for k, v in upload["headers"].items() if k != "Content-Length"}
            async with session.put(upload["upload_url"], data=PHOTO, headers=headers) as response:
                assert response.status == 200, await response.text()
            ready.append((user, upload["image_id"]))

        for start in range(0, total, 32):
            await asyncio.gather(*(prepare(n) for n in range(start, min(total, start + 32))))

    def complete(number: int) -> tuple[str, str, dict[str, object] | None, dict[str, str]]:
        user, image_id = ready[number]
        return "POST", f"/images/{image_id}/complete", None, tokens[user]

    return await drive(base, pid, complete, total, concurrency)


def decode_cpu_us() -> float:
    """CPU µs of completion's full inspection of the photo (magic bytes, header, every pixel)."""
    limits = InspectionLimits(max_pixels=50_000_000, max_frames=1000, max_animation_pixels=10**8)
    rounds = 20
    started = time.process_time()
    for _ in range(rounds):
        inspect_image(PHOTO, "image/jpeg", limits)
    return 1e6 * (time.process_time() - started) / rounds


def service_requests(image_ids: dict[str, str]) -> dict[str, Request]:
    tokens = {user: {"Authorization": f"Bearer {issue_token(SECRET, user)}"} for user in USERS}

    def user(number: int) -> str:
        return USERS[number % len(USERS)]

    return {
        "POST /images/upload": lambda n: ("POST", "/images/upload", UPLOAD_BODY, tokens[user(n)]),
        "GET /images": lambda n: ("GET", "/images?limit=20", None, tokens[user(n)]),
        "GET /images/{id}": lambda n: (
            "GET",
            f"/images/{image_ids[user(n)]}",
            None,
            tokens[user(n)],
        ),
        "GET /images/{id}/download": lambda n: (
            "GET",
            f"/images/{image_ids[user(n)]}/download",
            None,
            tokens[user(n)],
        ),
    }


def baseline_requests(image_ids: dict[str, str]) -> dict[str, Request]:
    def user(number: int) -> str:
        return USERS[number % len(USERS)]

    return {
        "POST /images/upload": lambda n: (
            "POST",
            "/images/upload",
            {**UPLOAD_BODY, "user_id": user(n)},
            {},
        ),
        "GET /images": lambda n: ("GET", f"/images?user_id={user(n)}&limit=20", None, {}),
        "GET /images/{id}": lambda n: (
            "GET",
            f"/images/{image_ids[user(n)]}?user_id={user(n)}",
            None,
            {},
        ),
        "GET /images/{id}/download": lambda n: (
            "GET",
            f"/images/{image_ids[user(n)]}/download?user_id={user(n)}",
            None,
            {},
        ),
    }


async def seed(settings: Settings, baseline_table: str | None) -> dict[str, str]:
    """A page of ready images per user in the service's table and the baseline's, if any (the
    same metadata), so that lists return full pages and downloads have something to sign.
    Returns one image id per user."""
    now = datetime.now(UTC)
    records = [
        ImageRecord(
            user_id=user,
            image_id=image_id,
            s3_key=f"images/{user}/{image_id}/original",
            content_type="image/jpeg",
            status=ImageStatus.READY,
            upload_time=now - timedelta(minutes=number),
            updated_at=now,
            tags=list(UPLOAD_BODY["tags"]),
            description="bench",
            size=1000,
            width=10,
            height=10,
        )
        for user in USERS
        # The first user has an album's worth, for the share link (shared_album).
        for number, image_id in enumerate(
            str(uuid.uuid4())
            for _ in range(SHARED_ALBUM_SIZE if user == USERS[0] else SEEDED_PER_USER)
        )
    ]
    image_ids = {record.user_id: record.image_id for record in records}
    async with aws_clients(settings) as clients:
        await ImageRepository(clients.table, settings.table).put_many(records)
        if baseline_table is None:
            return image_ids
        await clients.dynamodb.create_table(
            TableName=baseline_table,
            AttributeDefinitions=[
                {"AttributeName": "user_id", "AttributeType": "S"},
                {"AttributeName": "image_id", "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": "user_id", "KeyType": "HASH"},
                {"AttributeName": "image_id", "KeyType": "RANGE"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        for record in records:
            await clients.dynamodb.put_item(
                TableName=baseline_table,
                Item={
                    "user_id": {"S": record.user_id},
                    "image_id": {"S": record.image_id},
                    "s3_key": {"S": record.s3_key},
                    "content_type": {"S": record.content_type},
                    "upload_time": {"S": record.upload_time.isoformat()},
                    "tags": {"L": [{"S": tag} for tag in record.tags]},
                    "description": {"S": record.description},
                },
            )
    return image_ids


def service_environment(name: str, port: int) -> dict[str, str]:
    """`serve`'s settings in a benchmark: its own bucket, table and queue, and production
    defaults but the per-user limit (the bench is one client hammering the API: no per-user
    limit may shape it) and the log level."""
    return {
        "IMAGE_SERVICE_JWT_SECRET": SECRET,
        "IMAGE_SERVICE_BUCKET": name,
        "IMAGE_SERVICE_TABLE": name,
        "IMAGE_SERVICE_QUEUE_NAME": name,
        "IMAGE_SERVICE_PORT": str(port),
        "IMAGE_SERVICE_S3_EVENT_NOTIFICATIONS": "false",
        "IMAGE_SERVICE_UPLOAD_RATE_PER_MINUTE": "100000000",
        "IMAGE_SERVICE_UPLOAD_BURST": "100000000",
    }


def pin(pid: int, core: int) -> None:
    """``pid`` and its children (serve --workers N) on one core, where the machine has two."""
    if (os.cpu_count() or 1) < 2:
        return
    server = psutil.Process(pid)
    for each in (server, *server.children(recursive=True)):
        each.cpu_affinity([core])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="per endpoint and server")
    parser.add_argument(
        "--concurrency",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[1, 16, 64],
        help="comma-separated connection counts",
    )
    parser.add_argument(
        "--endpoints",
        type=lambda text: [name.strip() for name in text.split(",")],
        # Uploads last: they grow the tables, and moto's queries slow down as tables grow.
        default=[
            "GET /images",
            "GET /images/{id}",
            "GET /images/{id}/download",
            COMPLETE,
            SHARED,
            "POST /images/upload",
        ],
        help="comma-separated, from the default list",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="API processes: serve --workers N (default 1)"
    )
    parser.add_argument(
        "--traced",
        action="store_true",
        help="also run the service with OpenTelemetry on (100 %% sampling, OTLP/HTTP to a sink "
        "here): what tracing costs per request, against the same service untraced",
    )
    parser.add_argument(
        "--moto-closes-connections",
        action="store_true",
        help="serve moto with its own server, which closes every connection (bench/moto_server.py)"
        "; by default it keeps them alive, as AWS does",
    )
    args = parser.parse_args()

    suffix = uuid.uuid4().hex[:8]
    moto_port, service_port, baseline_port = free_port(), free_port(), free_port()
    endpoint = f"http://127.0.0.1:{moto_port}"
    os.environ.update(AWS, AWS_ENDPOINT_URL=endpoint)
    service_env = service_environment(f"bench-{suffix}", service_port)
    baseline_env = {"BASELINE_BUCKET": f"baseline-{suffix}", "BASELINE_TABLE": f"baseline-{suffix}"}

    async with AsyncExitStack() as stack:
        moto_process = await stack.enter_async_context(
            process(
                [
                    sys.executable,
                    "-m",
                    "bench.moto_server",
                    "-H",
                    "127.0.0.1",
                    "-p",
                    str(moto_port),
                    *(() if args.moto_closes_connections else ("--keep-alive",)),
                ],
                {},
                f"{endpoint}/moto-api/",
            )
        )
        moto_pid = moto_process.pid
        os.environ.update(service_env)
        settings = Settings.from_env()
        await provision(settings)
        image_ids = await seed(settings, baseline_env["BASELINE_TABLE"])
        async with aws_clients(settings) as clients:
            await clients.s3.create_bucket(Bucket=baseline_env["BASELINE_BUCKET"])

        direct_port = free_port()
        service = await stack.enter_async_context(
            process(
                [str(BIN / "image-service"), "serve", "--workers", str(args.workers)],
                service_env,
                f"http://127.0.0.1:{service_port}/health",
            )
        )
        direct = await stack.enter_async_context(
            process(
                [str(BIN / "image-service"), "serve", "--workers", str(args.workers)],
                {
                    **service_env,
                    "IMAGE_SERVICE_PORT": str(direct_port),
                    "IMAGE_SERVICE_AWS_TRANSPORT": "direct",
                },
                f"http://127.0.0.1:{direct_port}/health",
            )
        )
        baseline = await stack.enter_async_context(
            process(
                [
                    *(sys.executable, "-m", "uvicorn", "bench.baseline_app:app"),
                    "--port",
                    str(baseline_port),
                ],
                baseline_env,
                f"http://127.0.0.1:{baseline_port}/docs",
            )
        )
        traced_servers = {}
        if args.traced:
            sink = await stack.enter_async_context(otlp_sink())
            traced_port = free_port()
            traced = await stack.enter_async_context(
                process(
                    [str(BIN / "image-service"), "serve", "--workers", str(args.workers)],
                    {
                        **service_env,
                        "IMAGE_SERVICE_PORT": str(traced_port),
                        "OTEL_EXPORTER_OTLP_ENDPOINT": sink,
                        "OTEL_TRACES_SAMPLER": "always_on",
                    },
                    f"http://127.0.0.1:{traced_port}/health",
                )
            )
            pin(traced.pid, SERVER_CORE)
            traced_servers["traced"] = (
                f"http://127.0.0.1:{traced_port}",
                traced.pid,
                service_requests(image_ids),
            )
        for server in (service, direct, baseline):
            pin(server.pid, SERVER_CORE)
        pin(moto_pid, LOAD_CORE)
        pin(os.getpid(), LOAD_CORE)
        servers: dict[str, tuple[str, int, dict[str, Request]]] = {
            "service": (
                f"http://127.0.0.1:{service_port}",
                service.pid,
                service_requests(image_ids),
            ),
            "direct": (
                f"http://127.0.0.1:{direct_port}",
                direct.pid,
                service_requests(image_ids),
            ),
            "baseline": (
                f"http://127.0.0.1:{baseline_port}",
                baseline.pid,
                baseline_requests(image_ids),
            ),
            **traced_servers,
        }
        results: dict[tuple[str, int, str], Phase] = {}
        for endpoint_name in args.endpoints:
            if endpoint_name == SHARED:
                token = await shared_album(servers["service"][0])
                for concurrency in args.concurrency:
                    for name, (base, pid, _) in servers.items():
                        if name not in {"service", "direct"}:
                            continue
                        view: Request = lambda _n, t=token: (  # noqa: E731
                            "GET",
                            f"/s/{t}?limit={SHARED_ALBUM_SIZE}",
                            None,
                            {"Accept": "application/json"},
                        )
                        total = args.requests // 5 if concurrency == 1 else args.requests
                        await drive(base, pid, view, 50, concurrency)  # warm up
                        results[SHARED, concurrency, name] = await drive(
                            base, pid, view, total, concurrency
                        )
                continue
            if endpoint_name == COMPLETE:
                for concurrency in args.concurrency:
                    for name, (base, pid, _) in servers.items():
                        if name in {"service", "direct"}:
                            results[COMPLETE, concurrency, name] = await completions(
                                base, pid, args.requests, concurrency
                            )
                continue
            for concurrency in args.concurrency:
                # A B A B: each server's phase beside the other's, so drift hits both alike.
                for server_name, (base, pid, requests) in servers.items():
                    request = requests[endpoint_name]
                    # moto answers an index query by sorting the whole table (the service lists
                    # from an index, the baseline from the table): fewer lists keep it short.
                    total = args.requests // 5 if endpoint_name == "GET /images" else args.requests
                    total = total // 5 if concurrency == 1 else total
                    await drive(base, pid, request, 50, concurrency)  # warm up
                    results[endpoint_name, concurrency, server_name] = await drive(
                        base, pid, request, total, concurrency
                    )
    report(results, args)


@asynccontextmanager
async def otlp_sink() -> AsyncIterator[str]:
    """An OTLP/HTTP endpoint that takes every export and keeps nothing (on the load's core)."""

    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", accept)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def report(results: dict[tuple[str, int, str], Phase], args: argparse.Namespace) -> None:
    transport = "closes every connection" if args.moto_closes_connections else "keeps them alive"
    print(
        f"{args.requests} requests per endpoint, server and concurrency ({args.requests // 5} "
        f"lists; a fifth of each at one connection); moto {transport}\n"
    )
    header = (
        f"{'endpoint':<27} {'conns':>5} {'server':<9} {'req/s':>7} {'CPU µs/req':>10} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'RSS MB':>7} {'errors':>8}"
    )
    print(header)
    print("-" * len(header))
    for (endpoint_name, concurrency, server_name), phase in results.items():
        print(
            f"{endpoint_name:<27} {concurrency:>5} {server_name:<9} {phase.rps:>7.0f} "
            f"{phase.cpu_us:>10.0f} {phase.quantile_ms(0.5):>7.1f} "
            f"{phase.quantile_ms(0.99):>7.1f} {phase.rss_mb:>7.0f} "
            f"{sum(phase.errors.values()) or '-':>8}"
        )
    verdicts = []
    for transport_name, label in (("service", "aiobotocore (default)"), ("direct", "direct")):
        print(f"\n{label} / baseline:")
        for endpoint_name, concurrency in dict.fromkeys((name, c) for name, c, _ in results):
            ours = results[endpoint_name, concurrency, transport_name]
            if endpoint_name == COMPLETE:
                decode = decode_cpu_us()
                print(
                    f"  {endpoint_name:<27} {concurrency:>3} conns: {ours.cpu_us:.0f} µs per "
                    f"request, of which the full decode {decode:.0f} µs "
                    f"({decode / ours.cpu_us:.0%})"
                )
                continue
            if endpoint_name == SHARED:
                print(
                    f"  {endpoint_name:<27} {concurrency:>3} conns: {ours.cpu_us:.0f} µs per "
                    f"request, p99 {ours.quantile_ms(0.99):.1f} ms ({SHARED_ALBUM_SIZE} images, "
                    "a signed URL per image and preset; no baseline: the original had no links)"
                )
                continue
            theirs = results[endpoint_name, concurrency, "baseline"]
            cpu_ratio = ours.cpu_us / theirs.cpu_us
            p50_ratio = ours.quantile_ms(0.5) / theirs.quantile_ms(0.5)
            print(
                f"  {endpoint_name:<27} {concurrency:>3} conns: CPU per request {cpu_ratio:.2f}x, "
                f"throughput {ours.rps / theirs.rps:.2f}x, p50 {p50_ratio:.2f}x"
            )
            if endpoint_name == "POST /images/upload" and concurrency >= 16:
                verdicts.append(
                    f"{label}: upload URL at {concurrency}: CPU {cpu_ratio:.0%} of the baseline's "
                    f"(target <= {CPU_TARGET:.0%}): "
                    + ("met" if cpu_ratio <= CPU_TARGET else "MISSED")
                )
            target = READ_CPU_TARGET[transport_name]
            if endpoint_name.startswith("GET") and concurrency in (16, 64):
                verdicts.append(
                    f"{label}: {endpoint_name} at {concurrency}: CPU {cpu_ratio:.0%} of the "
                    f"baseline's (target <= {target:.0%}): "
                    + ("met" if cpu_ratio <= target else "MISSED")
                )
    if args.traced:
        print("\ntraced (100 % sampled) / untraced, the default transport:")
        for endpoint_name, concurrency in dict.fromkeys((name, c) for name, c, _ in results):
            if (endpoint_name, concurrency, "traced") in results:
                on = results[endpoint_name, concurrency, "traced"]
                off = results[endpoint_name, concurrency, "service"]
                print(
                    f"  {endpoint_name:<27} {concurrency:>3} conns: {on.cpu_us:.0f} against "
                    f"{off.cpu_us:.0f} CPU µs per request ({on.cpu_us / off.cpu_us:.2f}x)"
                )
    peak = max(
        phase.rss_mb for (_, _, name), phase in results.items() if name in {"service", "direct"}
    )
    verdicts.append(
        f"service RSS at most {peak:.0f} MB (target <= {RSS_TARGET_MB} MB): "
        + ("met" if peak <= RSS_TARGET_MB else "MISSED")
    )
    errors = {key: phase.errors for key, phase in results.items() if phase.errors}
    if errors:
        verdicts.append(f"errors: {errors}")
    print("\n" + "\n".join(verdicts))


if __name__ == "__main__":
    asyncio.run(main())
