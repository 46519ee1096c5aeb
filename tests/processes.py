"""`image-service` as real child processes: started, watched line by line, signalled, awaited."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from image_service.client import Image, ImageServiceClient
from image_service.programs.processes import wait_until_answering


async def run_command(
    *args: str, env: dict[str, str], cwd: Path | None = None, within: float = 60
) -> tuple[int, str, str]:
    """Runs one `image-service` command to its end: (exit status, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "image_service", *args),
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=within)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@dataclass
class Program:
    """A running `image-service` command; its stdout and stderr are read as they come."""

    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None
    _new_line: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def start(cls, *args: str, env: dict[str, str], cwd: Path | None = None) -> Program:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "image_service",
            *args,
            env=env,
            cwd=cwd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        program = cls(process)
        program._reader = asyncio.create_task(program._read())
        return program

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))
            self._new_line.set()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    async def wait_for_line(self, wanted: Callable[[str], bool], *, within: float = 30) -> str:
        """The first line (already read or still to come) for which `wanted` is true."""
        async with asyncio.timeout(within):
            seen = 0
            while True:
                for line in self.lines[seen:]:
                    if wanted(line):
                        return line
                seen = len(self.lines)
                if self.process.returncode is not None and self._reader is not None:
                    await self._reader
                    if len(self.lines) == seen:
                        raise AssertionError(f"exited before that line:\n{self.output}")
                self._new_line.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.2):
                        await self._new_line.wait()

    def signal(self, signum: int = signal.SIGTERM) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signum)

    async def wait(self, *, within: float = 60) -> int:
        code = await asyncio.wait_for(self.process.wait(), timeout=within)
        if self._reader is not None:
            await self._reader
        return code

    async def stop(self, *, within: float = 60) -> str:
        """SIGTERM, then the exit, which must be clean; returns everything it printed."""
        self.signal(signal.SIGTERM)
        code = await self.wait(within=within)
        assert code == 0, self.output
        return self.output

    async def kill(self) -> None:
        self.signal(signal.SIGKILL)
        await self.wait()


class PortTaken(AssertionError):
    """Another process got the spare port first (it was free when probed, then taken before
    the program bound it): whatever answers there is not the program under test."""


async def wait_for_port(
    port: int, *, within: float = 30, owner: asyncio.subprocess.Process | None = None
) -> None:
    """Until a program answers HTTP on ``port``, whatever it answers; with ``owner``, PortTaken
    unless the listener is that process (or one it started). The suite's processes probe for
    spare ports at once, so a port can be taken between the probe and the bind."""
    await wait_until_answering(
        f"http://127.0.0.1:{port}/", within=within, ready=lambda _status, _body: True
    )
    if owner is None:
        return
    listeners = {
        connection.pid
        for connection in psutil.net_connections(kind="tcp")
        if connection.laddr and connection.laddr.port == port and connection.status == "LISTEN"
    }
    ours = {owner.pid} | {child.pid for child in psutil.Process(owner.pid).children(True)}
    if not listeners & ours:
        raise PortTaken(f"port {port} is another process's ({sorted(map(str, listeners))})")


_MOTO_MAIN = (
    "import sys; from image_service.programs.embedded import patch_moto_transactions; "
    "patch_moto_transactions(); from moto.server import main; main(sys.argv[1:])"
)


@dataclass
class MotoProcess:
    """moto's server in a process of its own, so a test can take it away: SIGSTOP (it hangs:
    connections are accepted, nothing answers), SIGKILL (connections are refused), or start
    it again on the same port (empty: moto keeps its state in memory)."""

    port: int
    process: asyncio.subprocess.Process | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> MotoProcess:
        self.process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-c", _MOTO_MAIN, "-H", "127.0.0.1", "-p", str(self.port)),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await wait_for_port(self.port)
        return self

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


async def processed_by_a_new_worker(
    client: ImageServiceClient, environment: dict[str, str], image_id: str
) -> tuple[Image, Program]:
    """Starts a `worker`, waits until it has processed ``image_id``, stops it cleanly."""
    worker = await Program.start("worker", env=environment)
    try:
        image = await client.wait_until_processed(image_id, max_wait=30)
    finally:
        await worker.stop()
    return image, worker


def stop_server(process: subprocess.Popen[bytes], *, grace_seconds: float = 20) -> None:
    """Stops a server the suite started (LocalStack, SeaweedFS): SIGTERM, then SIGKILL if it
    has not gone within ``grace_seconds``."""
    process.terminate()
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
