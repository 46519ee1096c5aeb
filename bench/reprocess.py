"""What `image-service reprocess` costs a live service, against its own first processing.

Uploads N photos (1600x1200 JPEGs with EXIF) through one `serve` and one `worker` on moto and
waits until all are ready: the first processing, the baseline, measured in the same run. Then
`reprocess --apply --all` runs while clients download and upload, and is measured the same way:

- throughput of reprocessing against first processing (images/s, and the ratio);
- `GET /images/{id}/download` latency while it runs, against the same requests idle;
- a fresh upload's time to ready while it runs (it queues behind at most `--backlog` jobs),
  against the same upload idle.

    .venv/bin/python -m bench.reprocess [--images 200] [--backlog 10]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

import aiohttp
from PIL import Image

from bench.api import service_environment
from bench.stack import AWS, BIN, moto, process
from image_service.auth.tokens import issue_token
from image_service.client import ImageServiceClient
from image_service.ops.reprocess import DEFAULT_BACKLOG
from image_service.programs.embedded import free_port
from image_service.settings import Settings
from image_service.storage.clients import provision

UPLOADS_AT_ONCE = 16
DOWNLOADERS = 4
FRESH_UPLOADS = 5


def photo() -> bytes:
    """A 1600x1200 JPEG with a camera's EXIF: what processing decodes, renders and reads."""
    image = Image.radial_gradient("L").resize((1600, 1200)).convert("RGB")
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "BenchCam", "R1"
    exif.get_ifd(0x8769)[0x9003] = "2024:07:14 18:30:05"
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=88, exif=exif)
    return buffer.getvalue()


async def jobs_done(http: aiohttp.ClientSession, metrics_url: str) -> float:
    async with http.get(metrics_url) as response:
        for line in (await response.text()).splitlines():
            if line.startswith('image_service_worker_jobs_total{outcome="done"}'):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


async def until_done(http: aiohttp.ClientSession, metrics_url: str, target: float) -> None:
    while await jobs_done(http, metrics_url) < target:  # noqa: ASYNC110  # a counter, elsewhere
        await asyncio.sleep(0.2)


async def timed_loop(
    request: Callable[[], Awaitable[None]], stop: asyncio.Event, into: list[float]
) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        await request()
        into.append(time.perf_counter() - started)


def quantiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=20)
    return statistics.median(samples) * 1000, cuts[18] * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--backlog", type=int, default=DEFAULT_BACKLOG)
    args = parser.parse_args()
    data = photo()
    port, metrics_port = free_port(), free_port()
    async with AsyncExitStack() as stack:
        endpoint = await stack.enter_async_context(moto(keep_alive=True))
        os.environ.update(AWS, AWS_ENDPOINT_URL=endpoint)
        env = service_environment(f"reprocess-{uuid.uuid4().hex[:8]}", port)
        env["IMAGE_SERVICE_WORKER_METRICS_PORT"] = str(metrics_port)
        os.environ.update(env)
        await provision(Settings.from_env())
        base = f"http://127.0.0.1:{port}"
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        await stack.enter_async_context(
            process([str(BIN / "image-service"), "serve"], env, f"{base}/health")
        )
        await stack.enter_async_context(
            process([str(BIN / "image-service"), "worker"], env, metrics_url)
        )
        http = await stack.enter_async_context(aiohttp.ClientSession())
        client = ImageServiceClient(
            base, issue_token(env["IMAGE_SERVICE_JWT_SECRET"], "bench"), session=http
        )

        # First processing, the baseline: every upload completed, then until the worker is done.
        uploads = asyncio.Semaphore(UPLOADS_AT_ONCE)

        async def upload() -> str:
            async with uploads:
                return (await client.upload(data, content_type="image/jpeg")).image_id

        started = time.perf_counter()
        image_ids = await asyncio.gather(*(upload() for _ in range(args.images)))
        await until_done(http, metrics_url, args.images)
        first = time.perf_counter() - started

        async def download() -> None:
            await client.download_url(image_ids[len(image_ids) // 2])

        async def fresh() -> float:
            began = time.perf_counter()
            await client.upload(data, content_type="image/jpeg", wait=True)
            return time.perf_counter() - began

        async def measure_clients(
            seconds: float | None, while_running: Awaitable[object]
        ) -> tuple[list[float], list[float]]:
            stop, latencies = asyncio.Event(), []
            loops = [
                asyncio.create_task(timed_loop(download, stop, latencies))
                for _ in range(DOWNLOADERS)
            ]
            fresh_times = []
            for _ in range(FRESH_UPLOADS):
                fresh_times.append(await fresh())
            if seconds is not None:
                await asyncio.sleep(seconds)
            await while_running
            stop.set()
            await asyncio.gather(*loops)
            return latencies, fresh_times

        idle_latencies, idle_fresh = await measure_clients(2.0, asyncio.sleep(0))

        async def reprocess_all(
            clients: bool,
        ) -> tuple[float, list[float], list[float]]:
            """Seconds until every image (and any fresh upload) is done; the clients' figures."""
            target = await jobs_done(http, metrics_url) + args.images
            began = time.perf_counter()
            command = await asyncio.create_subprocess_exec(
                *(str(BIN / "image-service"), "reprocess", "--apply", "--all"),
                *("--backlog", str(args.backlog)),
                env={**os.environ, **env},
                stdout=asyncio.subprocess.DEVNULL,
            )
            latencies: list[float] = []
            fresh_times: list[float] = []
            if clients:
                latencies, fresh_times = await measure_clients(
                    None, until_done(http, metrics_url, target + FRESH_UPLOADS)
                )
            else:
                await until_done(http, metrics_url, target)
            seconds = time.perf_counter() - began
            if await command.wait() != 0:
                sys.exit("reprocess failed")
            return seconds, latencies, fresh_times

        again, _, _ = await reprocess_all(clients=False)
        under_load, busy_latencies, busy_fresh = await reprocess_all(clients=True)

    print(f"{args.images} photos (1600x1200 JPEG, EXIF), one worker, moto on loopback:")
    print(f"  first processing: {args.images / first:6.1f} images/s (upload to ready)")
    print(
        f"  reprocess --all:  {args.images / again:6.1f} images/s "
        f"({first / again:.2f}x the first processing's rate; backlog {args.backlog})"
    )
    print(
        f"  reprocess --all beside {DOWNLOADERS} clients downloading and {FRESH_UPLOADS} "
        f"fresh uploads: {args.images / under_load:6.1f} images/s"
    )
    (idle_p50, idle_p95), (busy_p50, busy_p95) = (
        quantiles(idle_latencies),
        quantiles(busy_latencies),
    )
    print(
        f"  download URL latency: idle p50 {idle_p50:.1f} ms p95 {idle_p95:.1f} ms; "
        f"while reprocessing p50 {busy_p50:.1f} ms p95 {busy_p95:.1f} ms "
        f"({busy_p50 / idle_p50:.2f}x at p50)"
    )
    print(
        f"  a fresh upload to ready: idle {statistics.median(idle_fresh):.2f} s; while "
        f"reprocessing {statistics.median(busy_fresh):.2f} s (median of {FRESH_UPLOADS})"
    )


if __name__ == "__main__":
    asyncio.run(main())
