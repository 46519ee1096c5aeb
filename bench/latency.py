"""Complete -> ready latency: how long after a client's `complete` its image is `ready`, for a
1 MP JPEG, on the service's default settings (a 20 s long poll, a 60 s visibility timeout).

Two stacks, each measured at idle (the first upload after a quiet spell, then more spaced apart
so the worker is back in its long poll each time) and under a `loadtest` in the background:

- `dev`: `image-service dev`, moto and the worker in one process (what `make run` starts);
- `serve`: moto (one process per service) + `image-service serve` + `image-service worker`.

    .venv/bin/python -m bench.latency [--quiet 60] [--samples 20] [--load-users 8]

Prints p50, p99 and the worst for each; the target is p99 <= 2 s at idle.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from PIL import Image as PILImage

from bench.stack import BIN, moto_per_service, process, stack_environment
from image_service.auth.tokens import issue_token
from image_service.client import ImageServiceClient
from image_service.programs.embedded import free_port
from image_service.settings import Settings
from image_service.storage.clients import provision

POLL_SECONDS = 0.02  # the measurement's own resolution
SECRET = "latency-" + uuid.uuid4().hex


def one_megapixel_jpeg() -> bytes:
    buffer = io.BytesIO()
    noise = PILImage.effect_noise((1224, 816), 40).convert("RGB")
    noise.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


@asynccontextmanager
async def dev_stack() -> AsyncIterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    environment = _quiet({"IMAGE_SERVICE_JWT_SECRET": SECRET, "IMAGE_SERVICE_PORT": str(port)})
    async with process([str(BIN / "image-service"), "dev"], environment, f"{url}/ready"):
        yield url


@asynccontextmanager
async def serve_stack() -> AsyncIterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    suffix = uuid.uuid4().hex[:10]
    async with AsyncExitStack() as stack:
        endpoints = await moto_per_service(stack)
        environment = stack_environment(f"latency-{suffix}", endpoints, secret=SECRET, port=port)
        saved = dict(os.environ)
        os.environ.update(environment)
        try:
            await provision(Settings.from_env(environment))
        finally:
            os.environ.clear()
            os.environ.update(saved)
        await stack.enter_async_context(
            process([str(BIN / "image-service"), "serve"], _quiet(environment), f"{url}/ready")
        )
        await stack.enter_async_context(
            process([str(BIN / "image-service"), "worker"], _quiet(environment), None)
        )
        yield url


def _quiet(environment: dict[str, str]) -> dict[str, str]:
    return {
        **environment,
        "IMAGE_SERVICE_LOG_LEVEL": "WARNING",
        # Each virtual user of the background load is one user: the per-user limit on upload
        # URLs would shape the load, not measure the latency under it.
        "IMAGE_SERVICE_UPLOAD_RATE_PER_MINUTE": "100000000",
        "IMAGE_SERVICE_UPLOAD_BURST": "100000000",
    }


async def complete_to_ready(client: ImageServiceClient, photo: bytes) -> float:
    ticket = await client.create_upload("image/jpeg", size=len(photo))
    await client.send(ticket, photo)
    started = time.perf_counter()
    await client.complete(ticket.image_id)
    # A client learns of `ready` by asking: the poll is the measurement.
    while (await client.get(ticket.image_id)).status in {"pending", "processing"}:  # noqa: ASYNC110
        await asyncio.sleep(POLL_SECONDS)
    elapsed = time.perf_counter() - started
    await client.delete(ticket.image_id, permanent=True)
    return elapsed


async def measure(url: str, *, quiet: float, samples: int, photo: bytes) -> list[float]:
    """The first sample after ``quiet`` seconds of nothing, then the rest a few seconds apart
    (a fresh long poll is waiting each time)."""
    await asyncio.sleep(quiet)
    async with ImageServiceClient(url, issue_token(SECRET, "latency-probe")) as client:
        figures = []
        for _ in range(samples):
            figures.append(await complete_to_ready(client, photo))
            await asyncio.sleep(random.uniform(0.5, 3.0))  # spacing, not secrets
        return figures


async def measure_under_load(url: str, *, samples: int, users: int, photo: bytes) -> list[float]:
    load = await asyncio.create_subprocess_exec(
        *(str(BIN / "image-service"), "loadtest", "--url", url, "--json"),
        *("--users", str(users), "--duration", "600"),
        env={**os.environ, "IMAGE_SERVICE_JWT_SECRET": SECRET},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await asyncio.sleep(3)  # the load is running
        async with ImageServiceClient(url, issue_token(SECRET, "latency-probe")) as client:
            return [await complete_to_ready(client, photo) for _ in range(samples)]
    finally:
        load.terminate()
        await load.wait()


def _summary(figures: list[float]) -> str:
    ordered = sorted(figures)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (
        f"first {figures[0] * 1000:6.0f} ms  p50 {statistics.median(ordered) * 1000:6.0f} ms  "
        f"p99 {p99 * 1000:6.0f} ms  worst {ordered[-1] * 1000:6.0f} ms  (n={len(figures)})"
    )


async def main(quiet: float, samples: int, load_users: int) -> None:
    photo = one_megapixel_jpeg()
    print(f"complete -> ready, 1 MP JPEG ({len(photo) // 1024} KiB), default settings")
    for name, stack in (("dev", dev_stack), ("serve + worker", serve_stack)):
        async with stack() as url:
            idle = await measure(url, quiet=quiet, samples=samples, photo=photo)
            print(f"{name:15} idle ({quiet:g} s quiet)  {_summary(idle)}", flush=True)
            loaded = await measure_under_load(url, samples=samples, users=load_users, photo=photo)
            print(f"{name:15} loadtest {load_users} users  {_summary(loaded)}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quiet", type=float, default=60, help="seconds of idle first")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--load-users", type=int, default=8)
    arguments = parser.parse_args()
    if not 1 <= arguments.samples <= 1000:
        sys.exit("--samples: 1-1000")
    asyncio.run(main(arguments.quiet, arguments.samples, arguments.load_users))
