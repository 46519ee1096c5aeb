"""LocalStack in host mode, S3 and SQS: an S3 that really checks SigV4 signatures and sends
real bucket notifications to its SQS, started from the virtualenv `make test` builds
(.venv-localstack, Python 3.13). No Docker. (Its DynamoDB needs a download: moto's is used.)"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from image_service.programs.embedded import free_port
from image_service.programs.processes import wait_until_answering
from tests.processes import stop_server

ROOT = Path(__file__).resolve().parent.parent
PYTHON = Path(os.environ.get("LOCALSTACK_VENV", ROOT / ".venv-localstack")) / "bin" / "python"
STARTUP_SECONDS = 90
# LocalStack checks presigned requests against this secret key.
ACCESS_KEY = SECRET_KEY = "test"
SERVICES = ("s3", "sqs")


def _services_up(status: int, body: bytes) -> bool:
    try:
        services = json.loads(body)["services"]
    except (ValueError, KeyError, TypeError):
        return False
    return status == 200 and all(
        services.get(name) in {"available", "running"} for name in SERVICES
    )


@contextmanager
def localstack(workdir: Path) -> Iterator[str]:
    if not PYTHON.exists():
        raise RuntimeError(f"{PYTHON} is missing: `make test` installs LocalStack's virtualenv")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(workdir),
        "SERVICES": ",".join(SERVICES),
        "S3_SKIP_SIGNATURE_VALIDATION": "0",
        "GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "DNS_ADDRESS": "0",
        "SKIP_SSL_CERT_DOWNLOAD": "1",
        "DISABLE_EVENTS": "1",
        "XDG_CACHE_HOME": str(workdir / "cache"),
        "FILESYSTEM_ROOT": str(workdir / "fs"),
        "LOCALSTACK_VOLUME_DIR": str(workdir / "volume"),
    }
    log = (workdir / "localstack.log").open("wb")
    process = subprocess.Popen(
        [str(PYTHON), "-m", "localstack.runtime.main"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        try:
            asyncio.run(
                wait_until_answering(
                    f"{endpoint}/_localstack/health",
                    within=STARTUP_SECONDS,
                    ready=_services_up,
                    exit_status=process.poll,
                )
            )
        except (RuntimeError, TimeoutError) as exc:
            log_text = (workdir / "localstack.log").read_text()[-4000:]
            raise RuntimeError(f"LocalStack did not start ({exc!r}):\n{log_text}") from None
        yield endpoint
    finally:
        stop_server(process)
        log.close()
