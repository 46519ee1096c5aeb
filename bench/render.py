"""Rendition speed on one core: this service's renderer against naive Pillow and libvips.

Part 1, CPU milliseconds per rendition (this process pinned to one core, every library told to
use one thread), each case measured for the three in the same run:

- this service: ``image_service.imaging.render.render_rendition``;
- naive Pillow: open, full decode, LANCZOS resize, save with the same quality;
- pyvips (libvips from the ``pyvips-binary`` wheel): ``thumbnail_buffer`` (shrink-on-load),
  then save with the same quality.

Cases: a 12 MP JPEG to 500 px WebP and to 500 px AVIF, a 2000x1333 JPEG to 500 px WebP, and a
12 MP HEIC to 500 px JPEG. Target: at most pyvips's CPU for the JPEG -> WebP cases.

Part 2, what smart crop costs: a cover rendition with ``gravity=auto`` (libvips' attention on
a 256 px copy) and ``gravity=focal`` against ``gravity=center``, same sizes, same run.

Part 3, the cached path under load: `image-service serve` against moto, one stored rendition
requested over and over at 1 and 16 connections; CPU microseconds per request of the API
process, served from the process's memory (the default) and from S3 (memory off). Target: at
most 300 µs.

    .venv/bin/python -m bench.render [--rounds 5] [--requests 3000]
"""

from __future__ import annotations

import os

# One thread each, before the libraries start their pools: the comparison is per core.
os.environ.setdefault("VIPS_CONCURRENCY", "1")

import argparse
import asyncio
import io
import time
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime

import aiohttp
import pyvips
from PIL import Image

import image_service.imaging.inspect  # noqa: F401  # HEIC for Pillow
from bench.api import drive, service_environment
from bench.stack import AWS, BIN, moto, process
from bench.variants import photo_like_jpeg
from image_service.auth.tokens import issue_token
from image_service.domain.layout import original_key
from image_service.domain.models import ImageRecord, ImageStatus
from image_service.imaging.render import render_rendition
from image_service.programs.embedded import free_port
from image_service.settings import Settings
from image_service.storage.clients import aws_clients, provision
from image_service.storage.dynamo import ImageRepository

CACHED_TARGET_US = 300
QUALITY = {"webp": 80, "avif": 60, "jpeg": 82}
PILLOW_FORMATS = {"webp": "WEBP", "avif": "AVIF", "jpeg": "JPEG"}


def _encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def service(data: bytes, fmt: str) -> bytes:
    return render_rendition(data, width=500, height=None, fit="inside", fmt=fmt, quality=None).data


def naive_pillow(data: bytes, fmt: str) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
    height = round(rgb.height * 500 / rgb.width)
    small = rgb.resize((500, height), Image.Resampling.LANCZOS)
    options: dict[str, object] = {"quality": QUALITY[fmt]}
    if fmt == "avif":
        options["max_threads"] = 1
    return _encoded(small, PILLOW_FORMATS[fmt], **options)


def libvips(data: bytes, fmt: str) -> bytes:
    image = pyvips.Image.thumbnail_buffer(data, 500)
    if fmt == "webp":
        return bytes(image.webpsave_buffer(Q=QUALITY["webp"], strip=True))
    if fmt == "avif":
        return bytes(image.heifsave_buffer(compression="av1", Q=QUALITY["avif"], strip=True))
    return bytes(image.jpegsave_buffer(Q=QUALITY["jpeg"], strip=True))


RENDERERS: dict[str, Callable[[bytes, str], bytes]] = {
    "service": service,
    "naive Pillow": naive_pillow,
    "pyvips": libvips,
}


def heic_of(jpeg: bytes) -> bytes:
    with Image.open(io.BytesIO(jpeg)) as image:
        return _encoded(image.convert("RGB"), "HEIF", quality=80)


def cpu_ms(
    render: Callable[[bytes, str], bytes], data: bytes, fmt: str, rounds: int
) -> float | None:
    """None when the library cannot do it (pyvips-binary's libheif has no HEVC decoder)."""
    try:
        render(data, fmt)  # warm: codecs loaded, caches filled
    except pyvips.Error:
        return None
    started = time.process_time()
    for _ in range(rounds):
        render(data, fmt)
    return 1000 * (time.process_time() - started) / rounds


def renderers_table(rounds: int) -> list[str]:
    big = photo_like_jpeg(4000, 3000)
    medium = photo_like_jpeg(2000, 1333)
    cases = [
        ("12 MP JPEG -> 500 px WebP", big, "webp"),
        ("12 MP JPEG -> 500 px AVIF", big, "avif"),
        ("2000x1333 JPEG -> 500 px WebP", medium, "webp"),
        ("12 MP HEIC -> 500 px JPEG", heic_of(big), "jpeg"),
    ]
    lines = [
        f"{'case':<31} " + " ".join(f"{name:>13}" for name in RENDERERS) + "  service/pyvips",
    ]
    verdicts = []
    for label, data, fmt in cases:
        figures = {name: cpu_ms(render, data, fmt, rounds) for name, render in RENDERERS.items()}
        ours, theirs = figures["service"], figures["pyvips"]
        assert ours is not None
        ratio = ours / theirs if theirs else None
        lines.append(
            f"{label:<31} "
            + " ".join(
                f"{figure:>10.1f} ms" if figure is not None else f"{'n/a':>13}"
                for figure in figures.values()
            )
            + (f"  {ratio:>13.2f}x" if ratio is not None else "  (no HEVC decoder in the wheel)")
        )
        if ratio is not None and "JPEG -> " in label and fmt == "webp":
            verdicts.append(
                f"{label}: {ratio:.2f}x pyvips's CPU (target <= 1): "
                + ("met" if ratio <= 1 else "MISSED")
            )
    return [*lines, "", *verdicts]


def gravity_table(rounds: int) -> list[str]:
    """CPU ms of cover renditions by gravity, and auto's and focal's cost as a ratio of
    center's, measured alternately in one run."""
    cases = [
        ("12 MP JPEG -> 256x256 cover JPEG", photo_like_jpeg(4000, 3000), 256),
        ("2000x1333 JPEG -> 512x512 cover", photo_like_jpeg(2000, 1333), 512),
        ("2000x1333 JPEG -> 1024x1024 cover", photo_like_jpeg(2000, 1333), 1024),
    ]
    gravities = ("center", "focal", "auto")
    lines = [
        f"{'case':<34} "
        + " ".join(f"{g:>10}" for g in gravities)
        + f"{'auto/center':>13}{'focal/center':>14}"
    ]
    for label, data, side in cases:

        def cover(gravity: str, data: bytes = data, side: int = side) -> Callable[[], object]:
            return lambda: render_rendition(
                data,
                width=side,
                height=side,
                fit="cover",
                fmt="jpeg",
                quality=None,
                gravity=gravity,
                focal=(0.7, 0.3),
            )

        totals = dict.fromkeys(gravities, 0.0)
        for gravity in gravities:
            cover(gravity)()  # warm
        for _ in range(rounds):  # interleaved: a noisy neighbour hits all three alike
            for gravity in gravities:
                started = time.process_time()
                cover(gravity)()
                totals[gravity] += time.process_time() - started
        ms = {g: 1000 * t / rounds for g, t in totals.items()}
        lines.append(
            f"{label:<34} "
            + " ".join(f"{ms[g]:>7.1f} ms" for g in gravities)
            + f"{ms['auto'] / ms['center']:>12.2f}x{ms['focal'] / ms['center']:>13.2f}x"
        )
    return lines


async def cached_path(requests: int, concurrency: int, *, in_memory: bool) -> str:
    """CPU µs per request of `serve` delivering one stored rendition: from its memory, or
    (``in_memory=False``: IMAGE_SERVICE_RENDITION_MEMORY_BYTES=0) with one S3 GET each."""
    suffix = uuid.uuid4().hex[:8]
    port = free_port()
    async with AsyncExitStack() as stack:
        endpoint = await stack.enter_async_context(moto(keep_alive=True))
        os.environ.update(AWS, AWS_ENDPOINT_URL=endpoint)
        env = service_environment(f"render-{suffix}", port)
        env["IMAGE_SERVICE_RENDITION_MEMORY_BYTES"] = str(32 * 2**20 if in_memory else 0)
        os.environ.update(env)
        settings = Settings.from_env()
        await provision(settings)
        user, image_id = "bench", str(uuid.uuid4())
        now = datetime.now(UTC)
        async with aws_clients(settings) as clients:
            key = original_key(user, image_id)
            await clients.s3.put_object(
                Bucket=settings.bucket, Key=key, Body=photo_like_jpeg(2000, 1333)
            )
            record = ImageRecord(
                user_id=user,
                image_id=image_id,
                s3_key=key,
                content_type="image/jpeg",
                status=ImageStatus.READY,
                upload_time=now,
                updated_at=now,
                size=1,
                width=2000,
                height=1333,
            )
            await ImageRepository(clients.table, settings.table).put_many([record])
        base = f"http://127.0.0.1:{port}"
        server = await stack.enter_async_context(
            process([str(BIN / "image-service"), "serve"], env, f"{base}/health")
        )
        token = {"Authorization": f"Bearer {issue_token(env['IMAGE_SERVICE_JWT_SECRET'], user)}"}
        async with aiohttp.ClientSession() as session:
            async with session.get(
                f"{base}/images/{image_id}/render?w=480&format=webp", headers=token
            ) as response:
                url = (await response.json())["url"]
            async with session.get(url) as response:  # the one render
                assert response.status == 200, await response.text()
        path = url.removeprefix(base)
        phase = await drive(
            base, server.pid, lambda n: ("GET", path, None, {}), requests, concurrency
        )
    verdict = "met" if phase.cpu_us <= CACHED_TARGET_US else "MISSED"
    source = "from memory" if in_memory else "from S3"
    return (
        f"cached rendition {source:<11} at {concurrency:>2} connections: "
        f"{phase.cpu_us:.0f} CPU µs per request, "
        f"{phase.rps:.0f} req/s, p50 {phase.quantile_ms(0.5):.1f} ms, "
        f"{sum(phase.errors.values())} errors (target <= {CACHED_TARGET_US} µs: {verdict})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    libvips_version = f"{pyvips.version(0)}.{pyvips.version(1)}"
    print(
        f"CPU ms per rendition on one core, {args.rounds} rounds each (libvips {libvips_version})\n"
    )
    print("\n".join(renderers_table(args.rounds)))
    print("\nCPU ms per cover rendition by gravity, on one core\n")
    print("\n".join(gravity_table(args.rounds)))
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))  # the load test is not pinned
    print()
    for in_memory in (True, False):
        for concurrency in (1, 16):
            print(asyncio.run(cached_path(args.requests, concurrency, in_memory=in_memory)))


if __name__ == "__main__":
    main()
