"""Soak: the whole service under load for minutes, then an audit that nothing was lost.

Starts moto (bench/moto_server.py, one process each for S3, DynamoDB and SQS),
`image-service serve --workers 2` and two
`image-service worker` processes, runs `image-service loadtest` with --users virtual users for
--duration seconds over the full lifecycle (upload URL, PUT to S3, complete, processed, list,
download, delete, every --keep-every'th image kept), then audits:

- 0 unexpected errors in the load test;
- every image kept is listed by the API exactly once, and its owner has no other image;
- every image deleted is gone from S3 (no object under its prefix or its upload key) and from
  DynamoDB (no record, no tag copy);
- every image processed reached `ready` exactly once (the workers' `image_ready` log events).

It prints the load test's figures, the audit, and the processes' memory at the end; exit status
1 if the audit fails. Bounded: at most 256 users and one hour.

    .venv/bin/python -m bench.soak                      # 64 users, 5 minutes
    .venv/bin/python -m bench.soak --users 16 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import boto3
import psutil

from bench.stack import AWS, BIN, moto_per_service, process, stack_environment
from image_service.auth.tokens import issue_token
from image_service.client import ImageServiceClient
from image_service.programs.embedded import free_port
from image_service.settings import Settings
from image_service.storage.clients import provision

MAX_USERS = 256
MAX_DURATION_SECONDS = 3600


@dataclass
class Audit:
    problems: list[str] = field(default_factory=list)
    kept_listed: int = 0
    deleted_checked: int = 0
    # Pending uploads nobody heard of: the API died after storing the record, before answering.
    abandoned_pending: int = 0

    @property
    def clean(self) -> bool:
        return not self.problems


async def audit(
    report: dict[str, Any],
    *,
    api_url: str,
    jwt_secret: str,
    s3_endpoint: str,
    dynamodb_endpoint: str,
    bucket: str,
    table: str,
    ready_events: list[str] | None = None,
    abandoned_pending_allowed: bool = False,
) -> Audit:
    """Checks a `loadtest --json` report against what the API lists and what S3 and DynamoDB
    hold. `ready_events`: image ids of the workers' `image_ready` log lines, if collected.
    `abandoned_pending_allowed`: an API process killed after storing a new upload's record and
    before answering leaves a pending record its client never heard of (its retry got a new
    one); such records expire with the TTL of pending records, and are counted, not faulted."""
    result = Audit()
    if report["error_count"]:
        result.problems.append(f"load test errors: {report['errors']}")
    kept = report["kept"]
    deleted = report["deleted"]
    if len(kept) + len(deleted) != report["lifecycles"]:
        result.problems.append("kept + deleted differs from the lifecycles completed")

    expected_by_owner: dict[str, list[str]] = {}
    for image in kept:
        expected_by_owner.setdefault(image["user"], []).append(image["image_id"])
    owners = {image["user"] for image in kept} | {image["user"] for image in deleted}
    for owner in sorted(owners):
        async with ImageServiceClient(api_url, issue_token(jwt_secret, owner)) as client:
            listed_images = [image async for image in client.iter_images(page_size=100)]
        expected = set(expected_by_owner.get(owner, []))
        if abandoned_pending_allowed:
            abandoned = [
                image
                for image in listed_images
                if image.status == "pending" and image.image_id not in expected
            ]
            result.abandoned_pending += len(abandoned)
            listed_images = [image for image in listed_images if image not in abandoned]
        listed = [image.image_id for image in listed_images]
        counts = Counter(listed)
        duplicated = [image_id for image_id, n in counts.items() if n > 1]
        if duplicated:
            result.problems.append(f"{owner}: listed more than once: {duplicated}")
        if set(counts) != expected:
            result.problems.append(
                f"{owner}: listed {sorted(set(counts) - expected)} not kept, "
                f"kept {sorted(expected - set(counts))} not listed"
            )
        result.kept_listed += len(expected & set(counts))

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name=AWS["AWS_DEFAULT_REGION"])
    dynamodb = boto3.client(
        "dynamodb", endpoint_url=dynamodb_endpoint, region_name=AWS["AWS_DEFAULT_REGION"]
    )
    keys = [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for item in page.get("Contents", [])
    ]
    records = [
        item["image_id"]["S"].split("#")[0]
        for page in dynamodb.get_paginator("scan").paginate(
            TableName=table, ProjectionExpression="image_id"
        )
        for item in page.get("Items", [])
    ]
    stored_ids = set(records)
    object_ids = {part for key in keys for part in key.split("/")}
    for image in deleted:
        if image["image_id"] in stored_ids:
            result.problems.append(f"deleted {image['image_id']} still has a record")
        if image["image_id"] in object_ids:
            result.problems.append(f"deleted {image['image_id']} still has objects")
        result.deleted_checked += 1
    for image in kept:
        if image["image_id"] not in object_ids:
            result.problems.append(f"kept {image['image_id']} has no objects")

    if ready_events is not None:
        processed = {image["image_id"] for image in kept + deleted}
        counts = Counter(ready_events)
        twice = sorted(i for i, n in counts.items() if n > 1)
        never = sorted(processed - set(counts))
        if twice:
            result.problems.append(f"ready more than once: {twice}")
        if never:
            result.problems.append(f"processed without a ready event: {never[:10]}")
    return result


async def _collect(stream: asyncio.StreamReader, events: list[str]) -> None:
    async for raw in stream:
        line = raw.decode(errors="replace")
        if '"event":"image_ready"' in line:
            events.append(json.loads(line)["image_id"])


async def soak(users: int, duration: float, keep_every: int) -> int:
    suffix = uuid.uuid4().hex[:10]
    secret = "soak-secret-" + uuid.uuid4().hex
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    async with AsyncExitStack() as stack:
        endpoints = await moto_per_service(stack)
        environment = {
            **stack_environment(f"soak-{suffix}", endpoints, secret=secret, port=port),
            "IMAGE_SERVICE_S3_EVENT_NOTIFICATIONS": "false",
        }
        settings = Settings.from_env(environment)
        os.environ.update({k: v for k, v in environment.items() if k.startswith("AWS_")})
        await provision(settings)
        quiet = {**environment, "IMAGE_SERVICE_LOG_LEVEL": "WARNING"}
        api = await stack.enter_async_context(
            process(
                [str(BIN / "image-service"), "serve", "--workers", "2"],
                quiet,
                f"{api_url}/health",
            )
        )
        events: list[str] = []
        workers = []
        for _ in range(2):
            worker = await asyncio.create_subprocess_exec(
                str(BIN / "image-service"),
                "worker",
                env={**os.environ, **environment},
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                limit=16 * 1024 * 1024,  # a line with a traceback must not stop the reading
            )
            assert worker.stderr is not None
            workers.append((worker, asyncio.create_task(_collect(worker.stderr, events))))

        print(f"soak: {users} users for {duration:g} s against {api_url}", file=sys.stderr)
        started = time.monotonic()
        load = await asyncio.create_subprocess_exec(
            *(str(BIN / "image-service"), "loadtest", "--json", "--url", api_url),
            *("--users", str(users), "--duration", str(duration)),
            *("--keep-every", str(keep_every)),
            env={**os.environ, **environment},
            stdout=asyncio.subprocess.PIPE,
        )
        output, _ = await load.communicate()
        report = json.loads(output)
        elapsed = time.monotonic() - started

        memory = {
            "api_mb": _tree_rss_mb(api.pid),
            "workers_mb": [_tree_rss_mb(worker.pid) for worker, _ in workers],
        }
        for worker, reader in workers:
            worker.terminate()
            await worker.wait()
            await reader
        result = await audit(
            report,
            api_url=api_url,
            jwt_secret=secret,
            s3_endpoint=endpoints["S3"],
            dynamodb_endpoint=endpoints["DYNAMODB"],
            bucket=settings.bucket,
            table=settings.table,
            ready_events=events,
        )
    _print(report, result, memory, elapsed)
    return 0 if result.clean else 1


def _tree_rss_mb(pid: int) -> float:
    root = psutil.Process(pid)
    return round(sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 1e6)


def _print(report: dict[str, Any], result: Audit, memory: dict[str, Any], elapsed: float) -> None:
    from image_service.client.loadtest import format_report

    print(format_report(report))
    print()
    print(
        f"wall time {elapsed:.0f} s; memory at the end: API {memory['api_mb']} MB "
        f"(2 processes), workers {memory['workers_mb']} MB"
    )
    print(
        f"audit: {result.kept_listed} kept images listed exactly once, "
        f"{result.deleted_checked} deleted images gone from S3 and DynamoDB"
    )
    if result.clean:
        print("audit: clean")
    for problem in result.problems:
        print(f"audit problem: {problem}")


def _bounded(low: float, high: float, kind: type[float] | type[int]) -> Any:
    def parse(text: str) -> float:
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}")
        return value

    return parse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=_bounded(1, MAX_USERS, int), default=64)
    parser.add_argument("--duration", type=_bounded(1, MAX_DURATION_SECONDS, float), default=300)
    parser.add_argument("--keep-every", type=_bounded(1, 1000, int), default=4)
    args = parser.parse_args()
    raise SystemExit(asyncio.run(soak(args.users, args.duration, args.keep_every)))


if __name__ == "__main__":
    main()
