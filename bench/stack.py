"""Starting what a benchmark or soak runs against: processes that must answer on a URL before
the run goes on, and moto's server (bench/moto_server.py) on a spare loopback port."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from image_service.embedded import free_port

REPOSITORY = Path(__file__).resolve().parent.parent  # where `-m bench.moto_server` resolves
BIN = Path(sys.executable).parent
AWS = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}
STARTUP_SECONDS = 20


async def wait_until_up(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(STARTUP_SECONDS * 20):
            try:
                async with session.get(url) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


@asynccontextmanager
async def process(
    argv: list[str], env: dict[str, str], health_url: str | None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A child process, up once ``health_url`` answers (or at once without one), stopped with
    SIGTERM on exit. BENCH_VERBOSE=1 shows its stderr."""
    child = await asyncio.create_subprocess_exec(
        *argv,
        env={**os.environ, **env},
        cwd=REPOSITORY,
        stdout=subprocess.DEVNULL,
        stderr=None if os.environ.get("BENCH_VERBOSE") else subprocess.DEVNULL,
    )
    try:
        if health_url is not None:
            await wait_until_up(health_url)
        yield child
    finally:
        if child.returncode is None:
            child.terminate()
        await child.wait()


@asynccontextmanager
async def moto() -> AsyncIterator[str]:
    """moto's server (S3, DynamoDB, SQS) on a spare port; yields its endpoint."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "bench.moto_server", "-H", "127.0.0.1", "-p", str(port)]
    async with process(argv, {}, f"{endpoint}/moto-api/"):
        yield endpoint
