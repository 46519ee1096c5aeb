"""Chaos soak: the soak's stack under faults, then the soak's audit and a bound on readiness.

Starts moto (one patched process each for S3, DynamoDB and SQS), `image-service serve
--workers 2` and two `image-service worker` processes, all on their default settings, and runs
careful clients through whole lifecycles (upload URL with an Idempotency-Key, PUT to S3,
complete, wait for ready, download, then delete or keep) while, every --fault-interval seconds,
one of these happens at random:

- an API process is SIGKILLed (serve's supervisor starts another);
- a worker is SIGKILLed mid-whatever, and started again;
- one backend (S3, DynamoDB or SQS) is frozen with SIGSTOP for --stall seconds, then SIGCONT.

A careful client retries a 5xx, a 429, a refused or dropped connection and a timeout with
backoff (honouring Retry-After), the same request with the same Idempotency-Key; it takes the
S3 PUT's 412 (its If-None-Match: the bytes are there already) and a DELETE's 404 after a lost
answer for what they mean. At the end the audit checks that every lifecycle a client finished
is intact: kept images listed once with their objects, deleted ones gone from S3 and DynamoDB,
and every completed image ready within the bound:

    2 x the visibility timeout + --stall + 15 s

A worker killed mid-job holds its job's message for one visibility timeout (20 s by default);
the bound lets that happen to one job twice in a row, plus a frozen backend and the processing
itself on a busy machine.

It prints lifecycles, faults by kind, what clients saw fail and retried, the slowest
complete -> ready, and the audit; exit status 1 if the audit fails.

    .venv/bin/python -m bench.chaos                       # 12 users, 120 s, a fault every 3 s
    .venv/bin/python -m bench.chaos --users 4 --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import psutil

from bench.soak import _bounded, audit
from bench.stack import BIN, moto_per_service, process, stack_environment
from image_service.auth.tokens import issue_token
from image_service.client import ApiError, ImageServiceClient, StorageError
from image_service.client.loadtest import sample_jpeg
from image_service.programs.embedded import free_port
from image_service.settings import Settings
from image_service.storage.clients import provision

T = TypeVar("T")
MAX_USERS = 128
MAX_DURATION_SECONDS = 3600
RETRY_DEADLINE_SECONDS = 120  # a careful client gives up on one step after this long
READY_MARGIN_SECONDS = 15  # processing itself, and a retry's backoff, on a busy machine


class GaveUp(Exception):
    def __init__(self, step: str, cause: str) -> None:
        super().__init__(f"{step}: {cause}")
        self.step = step
        self.cause = cause


@dataclass
class Tally:
    lifecycles: int = 0
    kept: list[dict[str, str]] = field(default_factory=list)
    deleted: list[dict[str, str]] = field(default_factory=list)
    retried: Counter[str] = field(default_factory=Counter)  # "step: what" -> times
    failed: Counter[str] = field(default_factory=Counter)  # lifecycles given up, by cause
    faults: Counter[str] = field(default_factory=Counter)
    ready_seconds: list[float] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        """In `loadtest --json`'s shape, for the soak's audit."""
        return {
            "lifecycles": self.lifecycles,
            "kept": self.kept,
            "deleted": self.deleted,
            "error_count": sum(self.failed.values()),
            "errors": dict(self.failed),
        }


def _retryable(exc: BaseException) -> str | None:
    """What went wrong, if a careful client would try again; None if it would not."""
    if isinstance(exc, ApiError) and (exc.status >= 500 or exc.status == 429):
        return f"{exc.status} {exc.code}"
    if isinstance(exc, StorageError) and exc.status >= 500:
        return f"s3 {exc.status}"
    if isinstance(exc, aiohttp.ClientError | TimeoutError | ConnectionError):
        return type(exc).__name__
    return None


async def careful(step: str, call: Callable[[], Awaitable[T]], tally: Tally) -> T:
    deadline = time.monotonic() + RETRY_DEADLINE_SECONDS
    delay = 0.2
    while True:
        try:
            return await call()
        except Exception as exc:
            cause = _retryable(exc)
            if cause is None:
                raise
            if time.monotonic() > deadline:
                raise GaveUp(step, cause) from None
            tally.retried[f"{step}: {cause}"] += 1
            wait = getattr(exc, "retry_after", None) or delay
            await asyncio.sleep(wait * random.uniform(0.8, 1.2))  # jitter
            delay = min(delay * 2, 5)


async def lifecycle(
    client: ImageServiceClient, user: str, keep: bool, data: bytes, tally: Tally, bound: float
) -> None:
    key = uuid.uuid4().hex
    ticket = await careful(
        "upload_url",
        lambda: client.create_upload("image/jpeg", size=len(data), idempotency_key=key),
        tally,
    )

    async def put() -> None:
        try:
            await client.send(ticket, data)
        except StorageError as exc:
            if exc.status != 412:  # If-None-Match: a retry after a lost answer
                raise

    await careful("put_to_s3", put, tally)
    completed = time.monotonic()
    await careful("complete", lambda: client.complete(ticket.image_id), tally)
    while True:
        image = await careful("processed", lambda: client.get(ticket.image_id), tally)
        if image.status not in {"pending", "processing"}:
            break
        if time.monotonic() - completed > bound + RETRY_DEADLINE_SECONDS:
            raise GaveUp("processed", "never ready")
        await asyncio.sleep(0.1)
    tally.ready_seconds.append(time.monotonic() - completed)
    if image.status != "ready":
        raise GaveUp("processed", image.status)
    fetched = await careful("download", lambda: client.download(ticket.image_id), tally)
    if fetched != data:
        raise GaveUp("download", "content differs")
    if keep:
        tally.kept.append({"user": user, "image_id": ticket.image_id})
        return

    async def delete() -> None:
        try:
            await client.delete(ticket.image_id, permanent=True)
        except ApiError as exc:
            if exc.status != 404:  # a retry after the first delete's answer was lost
                raise

    await careful("delete", delete, tally)
    tally.deleted.append({"user": user, "image_id": ticket.image_id})


class Faults:
    """Kills and stalls, one every ``interval`` seconds, until stopped."""

    def __init__(
        self,
        api: psutil.Process,
        workers: list[Any],
        backends: dict[str, int],
        restart_worker: Callable[[int], Awaitable[None]],
        stall: float,
        tally: Tally,
    ) -> None:
        self._api = api
        self._workers = workers
        self._backends = backends
        self._restart_worker = restart_worker
        self._stall = stall
        self._tally = tally

    async def run(self, interval: float) -> None:
        kinds = ["kill_api", "kill_worker", "stall_backend"]
        while True:
            await asyncio.sleep(interval * random.uniform(0.5, 1.5))
            kind = random.choice(kinds)
            if kind == "kill_api":
                children = [
                    c
                    for c in self._api.children()
                    if "resource_tracker" not in " ".join(c.cmdline())
                ]
                if children:
                    random.choice(children).kill()
            elif kind == "kill_worker":
                slot = random.randrange(len(self._workers))
                self._workers[slot].kill()
                await self._workers[slot].wait()
                await self._restart_worker(slot)
            else:
                name, pid = random.choice(list(self._backends.items()))
                kind = f"stall_{name.lower()}"
                os.kill(pid, signal.SIGSTOP)
                try:
                    await asyncio.sleep(self._stall)
                finally:
                    os.kill(pid, signal.SIGCONT)
            self._tally.faults[kind] += 1


async def chaos(users: int, duration: float, interval: float, stall: float, keep_every: int) -> int:
    suffix = uuid.uuid4().hex[:10]
    secret = "chaos-secret-" + uuid.uuid4().hex
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    tally = Tally()
    async with AsyncExitStack() as stack:
        endpoints = await moto_per_service(stack)
        environment = {
            **stack_environment(f"chaos-{suffix}", endpoints, secret=secret, port=port),
            "IMAGE_SERVICE_S3_EVENT_NOTIFICATIONS": "false",
            "IMAGE_SERVICE_LOG_LEVEL": "ERROR",
        }
        settings = Settings.from_env(environment)
        bound = 2 * settings.job_visibility_seconds + stall + READY_MARGIN_SECONDS
        os.environ.update({k: v for k, v in environment.items() if k.startswith("AWS_")})
        await provision(settings)
        backends = {
            name: _listening_pid(int(url.rsplit(":", 1)[1])) for name, url in endpoints.items()
        }
        api = await stack.enter_async_context(
            process(
                [str(BIN / "image-service"), "serve", "--workers", "2"],
                environment,
                f"{api_url}/health",
            )
        )
        workers: list[asyncio.subprocess.Process] = []

        async def start_worker(slot: int) -> None:
            worker = await asyncio.create_subprocess_exec(
                str(BIN / "image-service"),
                "worker",
                env={**os.environ, **environment},
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            if slot < len(workers):
                workers[slot] = worker
            else:
                workers.append(worker)

        for slot in range(2):
            await start_worker(slot)
        faults = Faults(psutil.Process(api.pid), workers, backends, start_worker, stall, tally)

        print(
            f"chaos: {users} users for {duration:g} s, a fault every ~{interval:g} s; "
            f"ready bound {bound:g} s",
            file=sys.stderr,
        )
        data = sample_jpeg()
        stop_at = time.monotonic() + duration
        numbers = iter(range(sys.maxsize))

        async def user(index: int) -> None:
            name = f"chaos-{index}"
            async with ImageServiceClient(api_url, issue_token(secret, name)) as client:
                for number in numbers:
                    if time.monotonic() >= stop_at:
                        return
                    keep = number % keep_every == 0
                    try:
                        await lifecycle(client, name, keep, data, tally, bound)
                        tally.lifecycles += 1
                    except GaveUp as exc:
                        tally.failed[str(exc)] += 1
                    except (ApiError, StorageError) as exc:
                        tally.failed[f"{type(exc).__name__}: {exc}"[:120]] += 1

        faulting = asyncio.create_task(faults.run(interval))
        started = time.monotonic()
        await asyncio.gather(*(user(index) for index in range(users)))
        faulting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await faulting
        elapsed = time.monotonic() - started
        for worker in workers:
            worker.terminate()
            await worker.wait()
        result = await audit(
            tally.report(),
            api_url=api_url,
            jwt_secret=secret,
            s3_endpoint=endpoints["S3"],
            dynamodb_endpoint=endpoints["DYNAMODB"],
            bucket=settings.bucket,
            table=settings.table,
            abandoned_pending_allowed=True,
        )
    slowest = max(tally.ready_seconds, default=0.0)
    if slowest > bound:
        result.problems.append(f"an image took {slowest:.1f} s to be ready (bound {bound:g} s)")
    _print(tally, result, elapsed, bound)
    return 0 if result.clean else 1


def _listening_pid(port: int) -> int:
    for connection in psutil.net_connections("tcp"):
        if connection.laddr and connection.laddr.port == port and connection.status == "LISTEN":
            assert connection.pid is not None
            return connection.pid
    raise SystemExit(f"nothing listens on {port}")


def _print(tally: Tally, result: Any, elapsed: float, bound: float) -> None:
    ready = sorted(tally.ready_seconds)
    print(f"wall time {elapsed:.0f} s: {tally.lifecycles} lifecycles finished")
    kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(tally.faults.items()))
    print(f"faults: {sum(tally.faults.values())} ({kinds})")
    print(f"retried by clients: {sum(tally.retried.values())}")
    for cause, count in tally.retried.most_common(8):
        print(f"  {count:5}  {cause}")
    print(f"lifecycles given up: {sum(tally.failed.values())}")
    for cause, count in tally.failed.most_common(8):
        print(f"  {count:5}  {cause}")
    if ready:
        print(
            f"complete -> ready: p50 {statistics.median(ready):.2f} s, "
            f"p99 {ready[min(len(ready) - 1, round(0.99 * (len(ready) - 1)))]:.2f} s, "
            f"slowest {ready[-1]:.2f} s (bound {bound:g} s)"
        )
    print(
        f"audit: {result.kept_listed} kept images listed exactly once, "
        f"{result.deleted_checked} deleted images gone from S3 and DynamoDB, "
        f"{result.abandoned_pending} pending uploads abandoned by a killed API process"
    )
    print("audit: clean" if result.clean else "audit: FAILED")
    for problem in result.problems:
        print(f"audit problem: {problem}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=_bounded(1, MAX_USERS, int), default=12)
    parser.add_argument("--duration", type=_bounded(1, MAX_DURATION_SECONDS, float), default=120)
    parser.add_argument("--fault-interval", type=_bounded(0.5, 600, float), default=3)
    parser.add_argument("--stall", type=_bounded(0.1, 60, float), default=3)
    parser.add_argument("--keep-every", type=_bounded(1, 1000, int), default=3)
    args = parser.parse_args()
    raise SystemExit(
        asyncio.run(
            chaos(args.users, args.duration, args.fault_interval, args.stall, args.keep_every)
        )
    )


if __name__ == "__main__":
    main()
