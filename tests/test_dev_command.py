"""`image-service dev`, what `make run` starts, as a real process: the printed token and curl
example work end to end against its embedded moto."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest

from image_service.embedded import free_port
from tests import images

STARTUP_SECONDS = 60


async def _drain(stream: asyncio.StreamReader, output: list[str]) -> None:
    while line := await stream.readline():
        output.append(line.decode())


@pytest.fixture
async def dev_server() -> AsyncIterator[tuple[str, str, list[str]]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IMAGE_SERVICE_"))}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "image_service.cli",
        "dev",
        "--port",
        str(port),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    assert process.stdout is not None
    token = None
    output: list[str] = []
    drain: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(STARTUP_SECONDS):
            while token is None:
                line = (await process.stdout.readline()).decode()
                assert line, "dev exited early:\n" + "".join(output)
                output.append(line)
                found = re.search(r"export TOKEN=(\S+)", line)
                token = found.group(1) if found else None
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(STARTUP_SECONDS):
                while True:
                    try:
                        async with http.get(f"{base}/ready") as response:
                            if response.status == 200:
                                break
                    except aiohttp.ClientConnectionError:
                        pass
                    await asyncio.sleep(0.1)
        # Keep reading what it prints: a full pipe would block the server mid-log.
        drain = asyncio.create_task(_drain(process.stdout, output))
        yield base, token, output
    finally:
        process.terminate()
        await process.wait()
        if drain is not None:
            await drain


async def test_dev_serves_the_whole_flow(dev_server: tuple[str, str, list[str]]) -> None:
    base, token, output = dev_server
    try:
        await _whole_flow(base, token)
    except (AssertionError, TimeoutError) as exc:
        raise AssertionError("what dev printed:\n" + "".join(output)) from exc


async def _whole_flow(base: str, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    data = images.jpeg()
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{base}/images/upload",
            json={"content_type": "image/jpeg", "tags": ["demo"]},
            headers=headers,
        ) as response:
            assert response.status == 201
            upload = await response.json()
        async with http.put(upload["upload_url"], data=data, headers=upload["headers"]) as response:
            assert response.status == 200
        async with http.post(
            f"{base}/images/{upload['image_id']}/complete", headers=headers
        ) as response:
            assert response.status == 200
            assert (await response.json())["status"] == "processing"
        async with asyncio.timeout(30):  # the in-process worker makes the variants
            while True:
                async with http.get(
                    f"{base}/images/{upload['image_id']}", headers=headers
                ) as response:
                    image = await response.json()
                if image["status"] == "ready":
                    break
                await asyncio.sleep(0.1)
        assert {v["name"] for v in image["variants"]} == {"thumb", "medium"}
        async with http.get(f"{base}/docs") as response:
            assert response.status == 200
