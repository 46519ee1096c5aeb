"""What every `image-service` client command shares: where the API is and the caller's token
(flags or environment), running a command against it, and how an image is printed."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable

from image_service.client.api import ImageServiceClient
from image_service.client.types import Image

URL_VARIABLE = "IMAGE_SERVICE_API_URL"
TOKEN_VARIABLE = "IMAGE_SERVICE_API_TOKEN"  # noqa: S105  # a variable name, not a secret
DEFAULT_URL = "http://127.0.0.1:8080"


def connection_flags() -> argparse.ArgumentParser:
    """The parent parser of every client command: ``--url`` and ``--token``."""
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument("--url", help=f"the API (default ${URL_VARIABLE} or {DEFAULT_URL})")
    flags.add_argument("--token", help=f"bearer token (default ${TOKEN_VARIABLE})")
    return flags


def connection(args: argparse.Namespace) -> ImageServiceClient:
    token = args.token or os.environ.get(TOKEN_VARIABLE)
    if not token:
        raise SystemExit(f"image-service {args.command}: give --token or set {TOKEN_VARIABLE}")
    url = args.url or os.environ.get(URL_VARIABLE) or DEFAULT_URL
    return ImageServiceClient(url, token)


def run(args: argparse.Namespace, command: Callable[[ImageServiceClient], Awaitable[int]]) -> None:
    async def main() -> int:
        async with connection(args) as images:
            return await command(images)

    raise SystemExit(asyncio.run(main()))


def fail(path: object, exc: Exception) -> None:
    print(f"{path}: {exc}", file=sys.stderr)


def row(image: Image) -> str:
    size = "-" if image.size is None else str(image.size)
    tags = ",".join(image.tags) or "-"
    moment = image.upload_time.strftime("%Y-%m-%dT%H:%M:%SZ")
    return "\t".join((image.image_id, image.status, size, moment, tags, image.filename or "-"))
