"""Chaos soak: the soak's stack under faults, on every path, then an audit of what was kept.

Starts moto (one patched process each for S3, DynamoDB and SQS), `image-service serve
--workers 2` and two `image-service worker` processes, all on their default settings, with a
webhook receiver here that verifies every signature and counts each `webhook-id`. Careful
clients run whole lifecycles, in turn:

- plain: upload URL with an Idempotency-Key, PUT to S3, complete, wait for ready, download;
- multipart: a two-part upload of which one part is sent, then resumed from `GET .../parts`;
- trash: once ready, renditions asked for while the image is trashed and restored, the
  renditions' answers timed against what the client knows of the image's state;

each then kept, or deleted for good. Half-way, `image-service reprocess --apply --all` runs
(again after an outage, until it finishes). Meanwhile, every --fault-interval seconds, one of
these happens at random:

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

The audit: every kept image listed once with its objects, every deleted one gone from S3 and
DynamoDB, every completed image ready within the bound; every event delivered at least once
(image.ready for each image its client saw ready, image.deleted for each one deleted), none for
a state an image never reached, every signature valid; no rendition served while its client
knew the image trashed; no object without a record once `reconcile`'s grace has passed; and
every refusal a client met a 503 with Retry-After, or a 4xx of its own making.

It prints lifecycles by path, faults by kind, what clients saw fail and retried, events and
duplicates, the slowest complete -> ready and event settle, and the audit; exit status 1 if the
audit fails.

    .venv/bin/python -m bench.chaos                       # 12 users, 120 s, a fault every 3 s
    .venv/bin/python -m bench.chaos --users 4 --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import random
import signal
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import aiohttp
import boto3
import psutil
from aiohttp import web

from bench.soak import _bounded, audit
from bench.stack import BIN, moto_per_service, process, stack_environment
from image_service.auth.tokens import issue_token
from image_service.client import ApiError, ImageServiceClient, StorageError
from image_service.client.loadtest import sample_jpeg
from image_service.client.parts import BytesSource
from image_service.client.webhooks import WebhookVerificationError, verify
from image_service.domain.models import MIN_PART_BYTES
from image_service.programs.embedded import free_port
from image_service.settings import Settings
from image_service.storage.clients import provision

T = TypeVar("T")
MAX_USERS = 128
MAX_DURATION_SECONDS = 3600
RETRY_DEADLINE_SECONDS = 120  # a careful client gives up on one step after this long
READY_MARGIN_SECONDS = 15  # processing itself, and a retry's backoff, on a busy machine
WEBHOOK_SECRET = "whsec_" + "Y2hhb3Mtd2ViaG9vay1zZWNyZXQtMzItYnl0ZXMhIQ=="
# After the last lifecycle, how long every event owed has to arrive: the outbox relay's grace
# and interval, a worker's restart, and a failed delivery's first retry (5 s), with room.
SETTLE_SECONDS = 60
PATHS = ("multipart", "trash", "plain", "plain")  # each user's lifecycles take them in turn


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
    paths: Counter[str] = field(default_factory=Counter)  # lifecycles finished, by path
    seen_ready: set[str] = field(default_factory=set)  # images a client saw ready
    renditions: Counter[str] = field(default_factory=Counter)  # answers, by outcome
    # Problems seen as they happen: a rendition served while its image was known trashed, a
    # refusal that is neither a 503 with Retry-After nor the client's own fault.
    problems: list[str] = field(default_factory=list)
    refusals: Counter[str] = field(default_factory=Counter)  # "503 with Retry-After", ...
    reprocess: list[str] = field(default_factory=list)  # each run's outcome

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
            _judge_refusal(step, exc, tally)
            cause = _retryable(exc)
            if cause is None:
                raise
            if time.monotonic() > deadline:
                raise GaveUp(step, cause) from None
            tally.retried[f"{step}: {cause}"] += 1
            wait = getattr(exc, "retry_after", None) or delay
            await asyncio.sleep(wait * random.uniform(0.8, 1.2))  # jitter
            delay = min(delay * 2, 5)


def _judge_refusal(step: str, exc: BaseException, tally: Tally) -> None:
    """Every refusal is a 503 with Retry-After, or a 4xx of the client's own making (which a
    careful client does not make: any other 4xx is the service's fault, and so is a 500)."""
    if not isinstance(exc, ApiError):
        return
    if exc.status == 503 and exc.retry_after is not None:
        tally.refusals["503 with Retry-After"] += 1
    elif exc.status == 429 and exc.retry_after is not None:
        tally.refusals["429 with Retry-After"] += 1
    elif exc.status in {404, 409} and step in {"delete", "restore", "trash"}:
        tally.refusals[f"{exc.status} after a lost answer"] += 1  # judged by the caller
    else:
        tally.refusals[f"{exc.status} {exc.code}"] += 1
        tally.problems.append(f"{step}: {exc.status} {exc.code} ({exc})"[:200])


async def lifecycle(
    client: ImageServiceClient,
    user: str,
    path: str,
    keep: bool,
    data: bytes,
    tally: Tally,
    bound: float,
) -> None:
    if path == "multipart":
        image_id = await _multipart_upload(client, data, tally)
    else:
        image_id = await _upload(client, data, tally)
    completed = time.monotonic()
    await careful("complete", lambda: client.complete(image_id), tally)
    while True:
        image = await careful("processed", lambda: client.get(image_id), tally)
        if image.status not in {"pending", "processing"}:
            break
        if time.monotonic() - completed > bound + RETRY_DEADLINE_SECONDS:
            raise GaveUp("processed", "never ready")
        await asyncio.sleep(0.1)
    tally.ready_seconds.append(time.monotonic() - completed)
    if image.status != "ready":
        raise GaveUp("processed", image.status)
    tally.seen_ready.add(image_id)
    fetched = await careful("download", lambda: client.download(image_id), tally)
    if fetched != data:
        raise GaveUp("download", "content differs")
    if path == "trash":
        await _trash_and_restore(client, image_id, tally)
    tally.paths[path] += 1
    if keep:
        tally.kept.append({"user": user, "image_id": image_id})
        return
    await _delete_for_good(client, user, image_id, tally)


async def _upload(client: ImageServiceClient, data: bytes, tally: Tally) -> str:
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
    return ticket.image_id


async def _multipart_upload(client: ImageServiceClient, data: bytes, tally: Tally) -> str:
    """Two parts: the first sent, the upload then interrupted (as a client's connection drops),
    and resumed from what the service says is missing."""
    key = uuid.uuid4().hex
    source = BytesSource(data)

    async def create() -> Any:
        return await client.create_multipart_upload(
            "image/jpeg", len(data), part_size=MIN_PART_BYTES, idempotency_key=key
        )

    ticket = await careful("multipart_url", create, tally)
    if len(ticket.parts) < 2:
        raise GaveUp("multipart_url", f"{len(ticket.parts)} part(s)")
    first = replace(ticket, parts=ticket.parts[:1])
    await careful("put_part", lambda: client.send_parts(first, source), tally)
    missing = await careful("resume", lambda: client.parts(ticket.image_id), tally)
    if [part.part_number for part in missing.parts] != [2]:
        raise GaveUp("resume", f"missing {[p.part_number for p in missing.parts]}")

    async def rest() -> None:  # fresh URLs on every try: a stalled S3 may outlast them
        await client.send_parts(await client.parts(ticket.image_id), source)

    await careful("put_part", rest, tally)
    return ticket.image_id


async def _trash_and_restore(client: ImageServiceClient, image_id: str, tally: Tally) -> None:
    """Trashes and restores the image while renditions of it are asked for; a rendition
    served whole while its client knew the image trashed is a leak."""
    trashed_at = restoring_at = float("inf")

    async def flip() -> None:
        nonlocal trashed_at, restoring_at
        await asyncio.sleep(random.uniform(0, 0.3))
        await careful("trash", lambda: client.delete(image_id), tally)
        trashed_at = time.monotonic()
        await asyncio.sleep(random.uniform(0.2, 0.8))
        restoring_at = time.monotonic()

        async def restore() -> None:
            try:
                await client.restore(image_id)
            except ApiError as exc:
                if exc.status != 409:  # not in the trash: a retry after a lost answer
                    raise

        await careful("restore", restore, tally)

    async def renditions() -> None:
        for width in (64, 128, 256, 320, 480):
            await asyncio.sleep(random.uniform(0, 0.3))
            started = time.monotonic()
            try:
                await client.render(image_id, width=width, format="jpeg")
            except ApiError as exc:
                trashed = exc.status in {404, 409}  # gone from view, or not ready now
                outcome = f"refused by the API ({exc.status})" if trashed else f"api {exc.status}"
                if exc.status >= 500:
                    _judge_refusal("render", exc, tally)
            except StorageError as exc:  # signed before the trash, fetched after it
                outcome = f"refused at fetch ({exc.status})"
            except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
                outcome = type(exc).__name__
            else:
                outcome = "served"
                if started > trashed_at and time.monotonic() < restoring_at:
                    tally.problems.append(f"{image_id}: a rendition served while trashed")
            tally.renditions[outcome] += 1

    await asyncio.gather(flip(), renditions())


async def _delete_for_good(
    client: ImageServiceClient, user: str, image_id: str, tally: Tally
) -> None:
    async def delete() -> None:
        try:
            await client.delete(image_id, permanent=True)
        except ApiError as exc:
            if exc.status != 404:  # a retry after the first delete's answer was lost
                raise

    await careful("delete", delete, tally)
    tally.deleted.append({"user": user, "image_id": image_id})


@dataclass
class Receiver:
    """The webhook receiver: verifies every signature, counts each webhook-id."""

    url: str = ""
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (id, type, image id)
    forged: int = 0  # requests whose signature did not verify

    def ids(self) -> Counter[str]:
        return Counter(webhook_id for webhook_id, _, _ in self.events)

    def of(self, event_type: str) -> set[str]:
        return {image_id for _, kind, image_id in self.events if kind == event_type}


@asynccontextmanager
async def webhook_receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()

    async def hooks(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            event = verify(WEBHOOK_SECRET, request.headers, body)
        except WebhookVerificationError:
            receiver.forged += 1
            return web.Response(status=400)
        receiver.events.append(
            (request.headers["webhook-id"], event["type"], event["data"]["image_id"])
        )
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks", hooks)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    receiver.url = f"http://127.0.0.1:{port}/hooks"
    try:
        yield receiver
    finally:
        await runner.cleanup()


async def reprocess_midway(
    delay: float, environment: dict[str, str], tally: Tally, deadline: float
) -> None:
    """`reprocess --apply --all` once, half-way; run again after an outage, as its message
    says, until it finishes."""
    await asyncio.sleep(delay)
    while time.monotonic() < deadline:
        command = await asyncio.create_subprocess_exec(
            str(BIN / "image-service"),
            "reprocess",
            "--apply",
            "--all",
            env={**os.environ, **environment},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await command.communicate()
        last = (out.decode().strip().splitlines() or err.decode().strip().splitlines() or [""])[-1]
        tally.reprocess.append(f"exit {command.returncode}: {last}"[:160])
        if command.returncode == 0:
            return
        await asyncio.sleep(2)
    tally.problems.append("reprocess never finished")


def sample_multipart_jpeg() -> bytes:
    """A JPEG a little over one part: noise, which JPEG cannot shrink."""
    from PIL import Image

    side = 1400
    while True:
        noise = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
        buffer = io.BytesIO()
        noise.save(buffer, format="JPEG", quality=95)
        if buffer.tell() > MIN_PART_BYTES:
            return buffer.getvalue()
        side += 200


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
        receiver = await stack.enter_async_context(webhook_receiver())
        environment = {
            **stack_environment(f"chaos-{suffix}", endpoints, secret=secret, port=port),
            "IMAGE_SERVICE_S3_EVENT_NOTIFICATIONS": "false",
            "IMAGE_SERVICE_LOG_LEVEL": "ERROR",
            "IMAGE_SERVICE_WEBHOOK_URL": receiver.url,
            "IMAGE_SERVICE_WEBHOOK_SECRET": WEBHOOK_SECRET,
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
        large = sample_multipart_jpeg()
        stop_at = time.monotonic() + duration
        numbers = iter(range(sys.maxsize))

        async def user(index: int) -> None:
            name = f"chaos-{index}"
            async with ImageServiceClient(api_url, issue_token(secret, name)) as client:
                for turn in range(sys.maxsize):
                    if time.monotonic() >= stop_at:
                        return
                    keep = next(numbers) % keep_every == 0
                    path = PATHS[(index + turn) % len(PATHS)]
                    try:
                        await lifecycle(
                            client,
                            name,
                            path,
                            keep,
                            large if path == "multipart" else data,
                            tally,
                            bound,
                        )
                        tally.lifecycles += 1
                    except GaveUp as exc:
                        tally.failed[str(exc)] += 1
                    except (ApiError, StorageError) as exc:
                        tally.failed[f"{type(exc).__name__}: {exc}"[:120]] += 1

        faulting = asyncio.create_task(faults.run(interval))
        reprocessing = asyncio.create_task(
            reprocess_midway(duration / 2, environment, tally, stop_at + RETRY_DEADLINE_SECONDS)
        )
        started = time.monotonic()
        await asyncio.gather(*(user(index) for index in range(users)))
        faulting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await faulting
        await reprocessing
        elapsed = time.monotonic() - started

        # Every event owed: ready for each image a client saw ready, deleted for each deleted.
        owed_ready = set(tally.seen_ready)
        owed_deleted = {image["image_id"] for image in tally.deleted}
        settle_started = time.monotonic()
        while time.monotonic() - settle_started < SETTLE_SECONDS:
            if owed_ready <= receiver.of("image.ready") and owed_deleted <= receiver.of(
                "image.deleted"
            ):
                break
            await asyncio.sleep(0.5)
        settled = time.monotonic() - settle_started
        orphans = await _orphaned_objects(environment, grace=bound)
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
        result.problems += tally.problems
        result.problems += _audit_events(
            receiver, owed_ready, owed_deleted, endpoints["DYNAMODB"], settings.table
        )
        result.problems += orphans
    slowest = max(tally.ready_seconds, default=0.0)
    if slowest > bound:
        result.problems.append(f"an image took {slowest:.1f} s to be ready (bound {bound:g} s)")
    _print(tally, result, elapsed, bound, receiver, settled)
    return 0 if result.clean else 1


def _audit_events(
    receiver: Receiver,
    owed_ready: set[str],
    owed_deleted: set[str],
    dynamodb_endpoint: str,
    table: str,
) -> list[str]:
    """Every owed event arrived, signed; none for a state its image never reached."""
    problems = []
    if receiver.forged:
        problems.append(f"{receiver.forged} webhook deliveries failed verification")
    missing_ready = owed_ready - receiver.of("image.ready")
    missing_deleted = owed_deleted - receiver.of("image.deleted")
    if missing_ready:
        problems.append(f"image.ready never delivered: {sorted(missing_ready)[:5]}")
    if missing_deleted:
        problems.append(f"image.deleted never delivered: {sorted(missing_deleted)[:5]}")
    dynamodb = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint)
    statuses = {
        item["image_id"]["S"]: item.get("status", {}).get("S")
        for page in dynamodb.get_paginator("scan").paginate(
            TableName=table,
            ProjectionExpression="image_id, #s",
            ExpressionAttributeNames={"#s": "status"},
        )
        for item in page.get("Items", [])
    }
    # Ready: seen ready by its client, or ready (or trashed from ready) now, or deleted after.
    for image_id in receiver.of("image.ready") - owed_ready:
        if statuses.get(image_id) not in {"ready", "trashed", "deleting", None}:
            problems.append(f"image.ready for {image_id}, which is {statuses.get(image_id)}")
    for image_id in receiver.of("image.deleted"):
        if statuses.get(image_id) is not None:
            problems.append(f"image.deleted for {image_id}, which still exists")
    for kind in ("image.rejected", "image.quarantined"):
        if receiver.of(kind):  # every upload here is a valid JPEG
            problems.append(f"{kind} for {sorted(receiver.of(kind))[:5]}")
    return problems


async def _orphaned_objects(environment: dict[str, str], *, grace: float) -> list[str]:
    """`reconcile` (a dry run): an object older than its grace without a record is lost."""
    command = await asyncio.create_subprocess_exec(
        str(BIN / "image-service"),
        "reconcile",
        "--grace-seconds",
        str(int(grace)),
        env={**os.environ, **environment},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await command.communicate()
    lines = out.decode().splitlines()
    orphans = [line for line in lines if line.startswith("object without record")]
    if command.returncode not in {0, 1} or not lines:
        return [f"reconcile failed ({command.returncode}): {err.decode()[-300:]}"]
    return [f"reconcile: {line}" for line in orphans[:10]]


def _listening_pid(port: int) -> int:
    for connection in psutil.net_connections("tcp"):
        if connection.laddr and connection.laddr.port == port and connection.status == "LISTEN":
            assert connection.pid is not None
            return connection.pid
    raise SystemExit(f"nothing listens on {port}")


def _print(
    tally: Tally, result: Any, elapsed: float, bound: float, receiver: Receiver, settled: float
) -> None:
    ready = sorted(tally.ready_seconds)
    paths = ", ".join(f"{path} {count}" for path, count in sorted(tally.paths.items()))
    print(f"wall time {elapsed:.0f} s: {tally.lifecycles} lifecycles finished ({paths})")
    kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(tally.faults.items()))
    print(f"faults: {sum(tally.faults.values())} ({kinds})")
    print(f"retried by clients: {sum(tally.retried.values())}")
    for cause, count in tally.retried.most_common(8):
        print(f"  {count:5}  {cause}")
    print(f"refusals met: {dict(tally.refusals)}")
    print(f"lifecycles given up: {sum(tally.failed.values())}")
    for cause, count in tally.failed.most_common(8):
        print(f"  {count:5}  {cause}")
    print(f"renditions during trash and restore: {dict(tally.renditions)}")
    for run in tally.reprocess:
        print(f"reprocess: {run}")
    ids = receiver.ids()
    delivered = Counter(kind for _, kind, _ in receiver.events)
    print(
        f"webhooks: {len(receiver.events)} deliveries of {len(ids)} events "
        f"({', '.join(f'{k} {n}' for k, n in sorted(delivered.items()))}), "
        f"{sum(n - 1 for n in ids.values())} duplicates, {receiver.forged} unverified; "
        f"every owed event in {settled:.1f} s after the last lifecycle"
    )
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
