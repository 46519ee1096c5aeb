"""`image-service dev`, what `make run` starts, as a real process: the printed token and curl
example work end to end against its embedded moto."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from asyncio.subprocess import PIPE, STDOUT
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from image_service.programs.embedded import free_port
from image_service.programs.processes import started, wait_until_answering
from tests import images
from tests.processes import wait_for_port

STARTUP_SECONDS = 60


async def _drain(stream: asyncio.StreamReader, output: list[str]) -> None:
    while line := await stream.readline():
        output.append(line.decode())


def _clean_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IMAGE_SERVICE_"))}


@pytest.fixture
async def dev_server() -> AsyncIterator[tuple[str, str, list[str]]]:
    """`image-service dev` on the port IMAGE_SERVICE_PORT names, as the settings table says."""
    port = free_port()
    env = {**_clean_environment(), "IMAGE_SERVICE_PORT": str(port)}
    argv = [sys.executable, "-m", "image_service.programs.cli", "dev"]
    output: list[str] = []
    base = f"http://127.0.0.1:{port}"
    async with started(argv, env=env, stdout=PIPE, stderr=STDOUT) as process:
        assert process.stdout is not None
        # Read all it prints, as it prints it: a full pipe would block the server mid-log.
        reading = asyncio.create_task(_drain(process.stdout, output))
        await wait_until_answering(
            f"{base}/ready", within=STARTUP_SECONDS, exit_status=lambda: process.returncode
        )
        async with asyncio.timeout(5):  # printed before it served; maybe not read yet
            while not (found := re.search(r"export TOKEN=(\S+)", "".join(output))):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        yield base, found.group(1), output
    await reading


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


def _printed_commands(output: list[str]) -> str:
    """The lines dev prints under "Try it", as a user would paste them."""
    text = "".join(output)
    block = text.split("Try it in another shell (every line as it is):\n", 1)[1]
    return block.split("\n\n", 1)[0]


async def test_every_printed_command_works_pasted_into_a_shell(
    dev_server: tuple[str, str, list[str]], tmp_path: Path
) -> None:
    """Pasted into a fresh shell elsewhere, without the virtualenv on PATH (as right after
    `make run`): the token, the curl example, and the CLI's upload and list."""
    assert shutil.which("curl"), "the example uses curl"
    script = _printed_commands(dev_server[2])
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != venv_bin)
    shell = await asyncio.create_subprocess_exec(
        "bash",
        "-e",
        "-c",
        script,
        cwd=tmp_path,
        env={**_clean_environment(), "PATH": path},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(shell.communicate(), timeout=60)
    printed = output.decode()
    assert shell.returncode == 0, f"{script}\n---\n{printed}"
    assert '"upload_url"' in printed, "the curl example got its upload URL"
    assert "ready" in printed, printed
    assert "demo" in printed, "list shows the uploaded photo with its tag"


async def test_a_port_on_the_command_line_wins_over_the_environment() -> None:
    from_env, from_flag = free_port(), free_port()
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "image_service.programs.cli", "dev", "--port", str(from_flag)),
        env={**_clean_environment(), "IMAGE_SERVICE_PORT": str(from_env)},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await wait_for_port(from_flag, within=STARTUP_SECONDS, owner=process)
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", from_env)
    finally:
        process.terminate()
        await process.wait()
