"""Starting a program and waiting until it answers: the one way `loadtest --dev`, the
benchmarks and the tests do it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

import aiohttp

Ready = Callable[[int, bytes], bool]
_POLL_SECONDS = 0.05
_STOP_SECONDS = 30


def answers(status: int, _body: bytes) -> bool:
    """Any answer but a server error: the program is up."""
    return status < 500


async def wait_until_answering(
    url: str,
    *,
    within: float,
    ready: Ready = answers,
    exit_status: Callable[[], int | None] | None = None,
) -> None:
    """Asks ``url`` until its answer is ``ready``; fails if the program exits first (its
    ``exit_status`` is not None), or after ``within`` seconds."""
    timeout = aiohttp.ClientTimeout(total=1)
    async with aiohttp.ClientSession(timeout=timeout) as http, asyncio.timeout(within):
        while True:
            try:
                async with http.get(url) as response:
                    if ready(response.status, await response.read()):
                        return
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            status = exit_status() if exit_status is not None else None
            if status is not None:
                raise RuntimeError(f"exited ({status}) before {url} answered")
            await asyncio.sleep(_POLL_SECONDS)


@asynccontextmanager
async def started(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    ready_url: str | None = None,
    ready: Ready = answers,
    within: float = 60,
    cwd: Path | None = None,
    stdout: int | IO[Any] | None = asyncio.subprocess.DEVNULL,
    stderr: int | IO[Any] | None = None,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """The program running, once ``ready_url`` answers (at once without one); on exit it is
    sent SIGTERM, and killed if it has not stopped within 30 s."""
    process = await asyncio.create_subprocess_exec(
        *argv, env=dict(env), cwd=cwd, stdout=stdout, stderr=stderr
    )
    try:
        if ready_url is not None:
            await wait_until_answering(
                ready_url, within=within, ready=ready, exit_status=lambda: process.returncode
            )
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=_STOP_SECONDS)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
