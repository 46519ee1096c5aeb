"""What a benchmark or soak runs against: its processes (started the one way, image_service/
processes.py) and moto's server (bench/moto_server.py) on a spare loopback port."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from image_service.programs.embedded import free_port
from image_service.programs.processes import started

REPOSITORY = Path(__file__).resolve().parent.parent  # where `-m bench.moto_server` resolves
BIN = Path(sys.executable).parent
AWS = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}
STARTUP_SECONDS = 20
SERVICES = ("S3", "DYNAMODB", "SQS")


@asynccontextmanager
async def process(
    argv: list[str], env: dict[str, str], health_url: str | None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A child process, up once ``health_url`` answers (or at once without one), stopped with
    SIGTERM on exit. BENCH_VERBOSE=1 shows its stderr."""
    async with started(
        argv,
        env={**os.environ, **env},
        ready_url=health_url,
        within=STARTUP_SECONDS,
        cwd=REPOSITORY,
        stderr=None if os.environ.get("BENCH_VERBOSE") else subprocess.DEVNULL,
    ) as child:
        yield child


@asynccontextmanager
async def moto(*, keep_alive: bool = False) -> AsyncIterator[str]:
    """moto's server (S3, DynamoDB, SQS) on a spare port; yields its endpoint. ``keep_alive``
    serves it keeping connections alive, as AWS does (bench/moto_server.py)."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "bench.moto_server", "-H", "127.0.0.1", "-p", str(port)]
    if keep_alive:
        argv.append("--keep-alive")
    async with process(argv, {}, f"{endpoint}/moto-api/"):
        yield endpoint


async def moto_per_service(stack: AsyncExitStack) -> dict[str, str]:
    """One moto process per service, as S3, DynamoDB and SQS are separate engines: moto is one
    Python process, and one alone is the bottleneck of the whole stack. Service -> endpoint."""
    return {service: await stack.enter_async_context(moto()) for service in SERVICES}


def stack_environment(
    name: str, endpoints: dict[str, str], *, secret: str, port: int
) -> dict[str, str]:
    """The environment of a stack's processes: its moto endpoints, its own bucket, table and
    queue, and the per-user limit lifted (each virtual user is one user: the limit would shape
    the load, not measure it)."""
    return {
        **AWS,
        **{f"AWS_ENDPOINT_URL_{service}": url for service, url in endpoints.items()},
        "IMAGE_SERVICE_JWT_SECRET": secret,
        "IMAGE_SERVICE_BUCKET": name,
        "IMAGE_SERVICE_TABLE": name,
        "IMAGE_SERVICE_QUEUE_NAME": name,
        "IMAGE_SERVICE_PORT": str(port),
        "IMAGE_SERVICE_UPLOAD_RATE_PER_MINUTE": "100000000",
        "IMAGE_SERVICE_UPLOAD_BURST": "100000000",
    }
