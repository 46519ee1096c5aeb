"""`image-service loadtest`: virtual users driving a running service through the whole lifecycle.

Each virtual user repeats: ask for an upload URL, PUT real JPEG bytes straight to S3, complete,
wait until the image is processed, list, ask for a download URL and fetch it, then delete the
image (or keep it, per ``--keep-every``). It stops after ``--count`` lifecycles or ``--duration``
seconds, shows progress on stderr, and prints throughput, p50/p95/p99 per step and errors by step
and status; ``--json`` prints one JSON document instead, including the ids of the images kept and
deleted, so that an audit can check them (``bench/soak.py``).

Bounded by design: at most 1,000 users and one hour, and only loopback targets unless
``--allow-remote`` (it creates load, and images, wherever it points).
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import math
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp

from image_service.auth.tokens import issue_token
from image_service.client.api import ImageServiceClient
from image_service.client.types import ApiError, ProcessingTimeout, StorageError

T = TypeVar("T")

MAX_USERS = 1000
MAX_DURATION_SECONDS = 3600
STEPS = ("upload_url", "put_to_s3", "complete", "processed", "list", "download", "delete")
PROCESSING_TIMEOUT_SECONDS = 60.0


class LoadTestError(Exception):
    """A step answered something other than what the lifecycle expects."""

    def __init__(self, step: str, status: int | str) -> None:
        super().__init__(f"{step}: {status}")
        self.step = step
        self.status = status


@dataclass
class Results:
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None
    timings: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STEPS})
    errors: dict[str, dict[str, int]] = field(default_factory=dict)
    lifecycles: int = 0
    kept: list[tuple[str, str]] = field(default_factory=list)  # (user, image id)
    # For the report over time: (seconds into the run, step, seconds it took) of every step,
    # and when each lifecycle ended.
    steps_over_time: list[tuple[float, str, float]] = field(default_factory=list)
    lifecycles_ended: list[float] = field(default_factory=list)
    deleted: list[tuple[str, str]] = field(default_factory=list)

    def error(self, step: str, status: int | str) -> None:
        by_status = self.errors.setdefault(step, {})
        by_status[str(status)] = by_status.get(str(status), 0) + 1

    @property
    def seconds(self) -> float:
        return (self.finished or time.perf_counter()) - self.started

    def summary(self) -> dict[str, Any]:
        def quantiles(values: list[float]) -> dict[str, float | int]:
            ordered = sorted(values)

            def at(q: float) -> float:
                if not ordered:
                    return math.nan
                return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

            return {
                "count": len(ordered),
                "p50_ms": at(0.5),
                "p95_ms": at(0.95),
                "p99_ms": at(0.99),
            }

        return {
            "seconds": round(self.seconds, 3),
            "lifecycles": self.lifecycles,
            "lifecycles_per_second": round(self.lifecycles / self.seconds, 2),
            "requests_per_second": round(
                sum(len(v) for v in self.timings.values()) / self.seconds, 2
            ),
            "steps": {step: quantiles(values) for step, values in self.timings.items()},
            "errors": self.errors,
            "error_count": sum(sum(v.values()) for v in self.errors.values()),
            "kept": [{"user": u, "image_id": i} for u, i in self.kept],
            "deleted": [{"user": u, "image_id": i} for u, i in self.deleted],
        }


def sample_jpeg(width: int = 640, height: int = 480) -> bytes:
    """A real photo-sized JPEG, made once: processing decodes and resizes it for real."""
    from PIL import Image

    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Plan:
    url: str
    users: int
    count: int | None
    duration: float | None
    keep_every: int
    tokens: list[str]


async def _lifecycle(
    images: ImageServiceClient, plan: Plan, user: int, number: int, data: bytes, results: Results
) -> None:
    """One image's whole life, each step timed; a step's failure names the step."""

    async def timed(step: str, call: Awaitable[T]) -> T:
        started = time.perf_counter()
        try:
            answer = await call
        except (ApiError, StorageError) as exc:
            raise LoadTestError(step, exc.status) from None
        took = time.perf_counter() - started
        results.timings[step].append(took)
        results.steps_over_time.append((started - results.started, step, took))
        return answer

    ticket = await timed(
        "upload_url",
        images.create_upload(
            "image/jpeg",
            size=len(data),
            tags=["loadtest", f"user{user}"],
            description=f"lifecycle {number}",
        ),
    )
    image_id = ticket.image_id
    await timed("put_to_s3", images.send(ticket, data))
    await timed("complete", images.complete(image_id))
    try:
        image = await timed(
            "processed", images.wait_until_processed(image_id, max_wait=PROCESSING_TIMEOUT_SECONDS)
        )
    except ProcessingTimeout:
        raise LoadTestError("processed", "timeout") from None
    if image.status != "ready":
        raise LoadTestError("processed", image.status)
    await timed("list", images.list(limit=20))
    fetched = await timed("download", images.download(image_id))
    if fetched != data:
        raise LoadTestError("download", "content differs")
    if plan.keep_every and number % plan.keep_every == 0:
        results.kept.append((image.user_id, image_id))
    else:
        await timed("delete", images.delete(image_id, permanent=True))
        results.deleted.append((image.user_id, image_id))


async def run(plan: Plan, *, progress: bool = True) -> Results:
    data = sample_jpeg()
    results = Results()
    numbers = iter(range(plan.count if plan.count is not None else sys.maxsize))
    deadline = None if plan.duration is None else time.perf_counter() + plan.duration
    connector = aiohttp.TCPConnector(limit=plan.users * 2)
    timeout = aiohttp.ClientTimeout(total=PROCESSING_TIMEOUT_SECONDS)

    async def user(index: int) -> None:
        for number in numbers:
            if deadline is not None and time.perf_counter() >= deadline:
                return
            try:
                await _lifecycle(clients[index], plan, index, number, data, results)
                results.lifecycles += 1
                results.lifecycles_ended.append(results.seconds)
            except LoadTestError as exc:
                results.error(exc.step, exc.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                results.error("connection", type(exc).__name__)

    async def report_progress() -> None:
        while True:
            await asyncio.sleep(1)
            errors = sum(sum(v.values()) for v in results.errors.values())
            print(
                f"\r{results.seconds:6.1f} s  {results.lifecycles} lifecycles  "
                f"{results.lifecycles / results.seconds:6.1f}/s  {errors} errors",
                end="",
                file=sys.stderr,
                flush=True,
            )

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        clients = [ImageServiceClient(plan.url, token, session=http) for token in plan.tokens]
        reporter = asyncio.create_task(report_progress()) if progress else None
        try:
            await asyncio.gather(*(user(index) for index in range(plan.users)))
        finally:
            if reporter is not None:
                reporter.cancel()
                print(file=sys.stderr)
    results.finished = time.perf_counter()
    return results


def format_report(summary: dict[str, Any]) -> str:
    lines = [
        f"{summary['lifecycles']} lifecycles in {summary['seconds']} s: "
        f"{summary['lifecycles_per_second']} lifecycles/s, "
        f"{summary['requests_per_second']} requests/s",
        "",
        f"{'step':<12} {'count':>7} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9}",
    ]
    for step, figures in summary["steps"].items():
        lines.append(
            f"{step:<12} {figures['count']:>7} {figures['p50_ms']:>9} "
            f"{figures['p95_ms']:>9} {figures['p99_ms']:>9}"
        )
    lines.append("")
    if summary["errors"]:
        lines.append("errors by step and status:")
        for step, by_status in summary["errors"].items():
            for status, count in by_status.items():
                lines.append(f"  {step} {status}: {count}")
    else:
        lines.append("errors: none")
    return "\n".join(lines)


def make_plan(
    *,
    url: str,
    users: int,
    count: int | None,
    duration: float | None,
    keep_every: int,
    jwt_secret: str | None,
    token: str | None,
    allow_remote: bool,
) -> Plan:
    if not 1 <= users <= MAX_USERS:
        raise ValueError(f"--users must be between 1 and {MAX_USERS}")
    if count is None and duration is None:
        raise ValueError("give --count or --duration")
    if duration is not None and not 0 < duration <= MAX_DURATION_SECONDS:
        raise ValueError(f"--duration must be between 0 and {MAX_DURATION_SECONDS} seconds")
    if count is not None and count < 1:
        raise ValueError("--count must be at least 1")
    if not allow_remote and not is_loopback(url):
        raise ValueError(f"{url} is not a loopback address: pass --allow-remote to load it")
    if token is not None:
        tokens = [token] * users
    elif jwt_secret:
        tokens = [
            issue_token(jwt_secret, f"loadtest-{n}", ttl_seconds=MAX_DURATION_SECONDS + 600)
            for n in range(users)
        ]
    else:
        raise ValueError("give --token, or the JWT secret (IMAGE_SERVICE_JWT_SECRET) to mint them")
    return Plan(url, users, count, duration, keep_every, tokens)
