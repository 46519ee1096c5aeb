"""`image-service dev`: the whole service in one process on embedded moto (what `make run`
starts), and the same as a child process for `loadtest --dev`."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import shlex
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from image_service import __version__
from image_service.auth.tokens import DEV_TOKEN_TTL_SECONDS, DEV_USER, issue_token
from image_service.client.shell import TOKEN_VARIABLE, URL_VARIABLE
from image_service.logs import configure_logging
from image_service.programs.embedded import free_port, moto_server, sample_photo
from image_service.programs.processes import started
from image_service.programs.serve import serve
from image_service.settings import PREFIX, Settings
from image_service.storage.clients import provision


def run_dev(*, host: str | None, port: int | None) -> None:
    """`image-service dev`: the whole service on embedded moto, with a worker in-process;
    IMAGE_SERVICE_HOST and _PORT as everywhere, ``host`` and ``port`` (the flags) winning."""

    if not os.environ.get(PREFIX + "JWT_SECRET"):
        # A fresh key per run: dev tokens are printed below and die with the process.
        os.environ[PREFIX + "JWT_SECRET"] = secrets.token_urlsafe(32)
    settings = Settings.from_env()
    settings = dataclasses.replace(
        settings,
        host=host or settings.host,
        port=settings.port if port is None else port,
        embedded_worker=True,
    )
    configure_logging(settings.log_level, settings.log_format)
    with moto_server() as endpoint, tempfile.TemporaryDirectory(prefix="image-service-") as tmp:
        asyncio.run(provision(settings))
        token = issue_token(settings.jwt_secret, DEV_USER, ttl_seconds=DEV_TOKEN_TTL_SECONDS)
        base = f"http://{settings.host}:{settings.port}"
        photo = sample_photo(Path(tmp))
        command = _this_command()
        print(
            f"""
image_service {__version__} (dev): moto S3 + DynamoDB + SQS at {endpoint}; worker in-process

  Page     {base}/          (upload from the browser: "Mint a dev token", then drop files)
  API      {base}
  Docs     {base}/docs
  Token    (user "{DEV_USER}", valid 24 h)

  Try it in another shell (every line as it is):
    export TOKEN={token}
    curl -s -X POST {base}/images/upload -H "Authorization: Bearer $TOKEN" \\
         -H "Content-Type: application/json" -d '{{"content_type": "image/jpeg", "tags": ["demo"]}}'
    export {TOKEN_VARIABLE}=$TOKEN {URL_VARIABLE}={base}
    {command} upload {shlex.quote(str(photo))} --tag demo --wait && {command} list
""",
            flush=True,
        )
        serve(settings, dev_tokens=True)


def _this_command() -> str:
    """How a shell reaches this program: its name when PATH finds this very one (an activated
    virtualenv, an install), else its full path (`make run` calls .venv/bin/image-service)."""
    installed = Path(sys.executable).parent / "image-service"
    if not installed.exists():
        return f"{shlex.quote(sys.executable)} -m image_service"
    found = shutil.which("image-service")
    if found is not None and Path(found).resolve() == installed.resolve():
        return "image-service"
    return shlex.quote(str(installed.absolute()))


@asynccontextmanager
async def dev_process(secret: str) -> AsyncIterator[str]:
    """`image-service dev` on a spare port, for `loadtest --dev`: a whole stack to load;
    yields its URL once it answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    environment = {
        **os.environ,
        PREFIX + "JWT_SECRET": secret,
        # Each virtual user is one user: the per-user limit would shape the load, not measure it.
        PREFIX + "UPLOAD_RATE_PER_MINUTE": "1000000",
        PREFIX + "UPLOAD_BURST": "1000000",
        PREFIX + "LOG_LEVEL": "WARNING",
    }
    argv = [sys.executable, "-m", "image_service", "dev", "--port", str(port)]
    async with started(argv, env=environment, ready_url=f"{url}/health", within=60):
        yield url
