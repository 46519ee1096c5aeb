"""A 200 MB image uploaded in parts to an S3 that checks every signature (LocalStack, host
mode), through `image-service serve` and its Python client, against boto3's own transfer
manager moving the same bytes to the same S3 in the same run.

For 1, 4 and 8 parts at once (8 MiB parts, each signed with its length and SHA-256):

- upload throughput, MB/s, of the client's ``upload_multipart`` (hashing the parts first, then
  PUTting them) and of boto3's ``upload_fileobj`` with the same part size and concurrency (no
  service, no per-part checksums): the ratio is the cost of the service's protocol;
- completion: the service assembling the parts, then reading and verifying all 200 MB (hash,
  magic bytes, a full decode), and the API process's peak RSS meanwhile: the spool keeps
  8 MiB in memory, so what it adds over its idle size is the decode, not the file.

Then a resume: half the parts sent, the client's state lost, and ``resume_upload`` sending the
rest: the time to finish, against uploading the whole file again.

    .venv/bin/python -m bench.multipart [--megabytes 200] [--parallel 1,4,8]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import tempfile
import time
import uuid
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path

import boto3
import psutil
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from PIL import Image

from bench.api import service_environment
from bench.stack import AWS, BIN, moto, process
from image_service.auth.tokens import issue_token
from image_service.client import ImageServiceClient
from image_service.client.parts import BytesSource, MultipartTicket, digests
from image_service.programs.embedded import free_port
from tests.localstack import ACCESS_KEY, SECRET_KEY, localstack

PART_BYTES = 8 * 1024 * 1024
MB = 1_000_000


def big_png(megabytes: int) -> bytes:
    """A valid PNG of about ``megabytes`` MB under the service's 50 MP limit: RGBA noise,
    stored uncompressed (at 4 bytes a pixel, 200 MB is 7,000 x 7,000)."""
    cache = Path(tempfile.gettempdir()) / f"image-service-bench-{megabytes}mb.png"
    if cache.exists():
        return cache.read_bytes()
    side = int((megabytes * MB / 4) ** 0.5)
    image = Image.frombytes("RGBA", (side, side), os.urandom(side * side * 4))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=0)
    cache.write_bytes(buffer.getvalue())
    return buffer.getvalue()


class PeakRss:
    """The highest RSS of a process, sampled every 20 ms while the block runs."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.idle = self._process.memory_info().rss
        self.peak = self.idle
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self._process.memory_info().rss)
            await asyncio.sleep(0.02)

    async def __aenter__(self) -> PeakRss:
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


def boto3_seconds(endpoint: str, bucket: str, data: bytes, parallel: int) -> float:
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
        config=Config(signature_version="s3v4"),
    )
    config = TransferConfig(
        multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES, max_concurrency=parallel
    )
    started = time.perf_counter()
    s3.upload_fileobj(io.BytesIO(data), bucket, f"baseline/{uuid.uuid4()}", Config=config)
    return time.perf_counter() - started


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument(
        "--parallel",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[1, 4, 8],
        help="comma-separated parts at once",
    )
    return parser.parse_args()


async def main(args: argparse.Namespace, s3_endpoint: str) -> None:
    data = big_png(args.megabytes)
    size_mb = len(data) / MB
    with Image.open(io.BytesIO(data)) as image:
        decoded_mib = image.width * image.height * 4 / 2**20
    print(
        f"{size_mb:.0f} MB PNG, {-(-len(data) // PART_BYTES)} parts of 8 MiB; its decoded "
        f"pixels take {decoded_mib:.0f} MiB (what verification must hold, spooled or not)\n"
    )

    started = time.perf_counter()
    sums = await digests(BytesSource(data), PART_BYTES)
    hashing = time.perf_counter() - started
    assert sums.parts
    print(f"client: SHA-256 of every part and of the file: {hashing:.2f} s\n")

    port = free_port()
    name = f"multipart-{uuid.uuid4().hex[:8]}"
    async with AsyncExitStack() as stack:
        others = await stack.enter_async_context(moto(keep_alive=True))
        env = {
            **AWS,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_ENDPOINT_URL": others,
            "AWS_ENDPOINT_URL_S3": s3_endpoint,
            **service_environment(name, port),
        }
        init = await asyncio.create_subprocess_exec(
            str(BIN / "image-service"), "init", env={**os.environ, **env}
        )
        assert await init.wait() == 0
        base = f"http://127.0.0.1:{port}"
        server = await stack.enter_async_context(
            process([str(BIN / "image-service"), "serve"], env, f"{base}/health")
        )
        token = issue_token(env["IMAGE_SERVICE_JWT_SECRET"], "bench")
        client = await stack.enter_async_context(ImageServiceClient(base, token, timeout=600))

        print(
            "| parts at once | service + client | boto3 upload_fileobj | ratio | "
            "completion (assemble + verify) | API RSS idle → peak |"
        )
        print("|---|---|---|---|---|---|")
        for parallel in args.parallel:
            ticket = await client.create_multipart_upload(
                "image/png",
                len(data),
                part_size=PART_BYTES,
                part_checksums=sums.parts,
                checksum_sha256=sums.whole,
            )
            assert isinstance(ticket, MultipartTicket)
            started = time.perf_counter()
            await client.send_parts(ticket, BytesSource(data), parts_at_once=parallel)
            ours = time.perf_counter() - started + hashing
            async with PeakRss(server.pid) as rss:
                started = time.perf_counter()
                image = await client.complete(ticket.image_id)
                completion = time.perf_counter() - started
            assert image.status == "processing", image
            theirs = await asyncio.to_thread(boto3_seconds, s3_endpoint, name, data, parallel)
            print(
                f"| {parallel} | {size_mb / ours:.0f} MB/s ({ours:.1f} s) | "
                f"{size_mb / theirs:.0f} MB/s ({theirs:.1f} s) | {theirs / ours:.2f}x | "
                f"{completion:.1f} s | {rss.idle / 2**20:.0f} → {rss.peak / 2**20:.0f} MiB |"
            )

        parallel = max(args.parallel)
        ticket = await client.create_multipart_upload(
            "image/png", len(data), part_size=PART_BYTES, part_checksums=sums.parts
        )
        assert isinstance(ticket, MultipartTicket)
        half = replace(ticket, parts=ticket.parts[: len(ticket.parts) // 2])
        await client.send_parts(half, BytesSource(data), parts_at_once=parallel)
        started = time.perf_counter()
        image = await client.resume_upload(
            ticket.image_id, BytesSource(data), parts_at_once=parallel
        )
        resumed = time.perf_counter() - started
        assert image.status == "processing", image
        print(
            f"\nresume after losing the client's state at half ({parallel} parts at once): "
            f"{resumed:.1f} s to finish (the missing half sent, assembled, verified), "
            f"against {ours + completion:.1f} s for the whole upload and completion"
        )


if __name__ == "__main__":
    options = arguments()
    with tempfile.TemporaryDirectory() as workdir, localstack(Path(workdir)) as endpoint:
        asyncio.run(main(options, endpoint))
