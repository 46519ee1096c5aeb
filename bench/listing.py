"""Listing cost at scale: one user with 20,000 images, pages of 50.

Loads the images (realistic tags, two years of upload times, a mix of statuses) through the
storage layer in BatchWriteItem batches, starts the service on a loopback port against moto's
server (a child process), and walks pages of 50 through the HTTP API for each access pattern,
reading `image_service_dynamodb_items_read_total` from /metrics around every page.

Prints, per pattern: items read per page (mean and max) and the p50/p95 page latency, next to
a baseline measured in the same run on the same data: the same pages answered the way this
service did before its tag and status indexes (the upload-time index plus a FilterExpression).
Target: at most 2 x page size items read per page for every pattern.

Latency here is mostly moto's: it answers an index query by sorting every item of the table
(bench/moto_server.py makes that bearable), so its milliseconds grow with the table while
DynamoDB's grow with the items read. Items read is the
figure that carries over to AWS (it is what read capacity is billed on).

    .venv/bin/python -m bench.listing [--images 20000] [--pages 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from bench.stack import moto
from image_service.auth.tokens import issue_token
from image_service.domain.models import ImageRecord, ImageStatus, format_timestamp
from image_service.programs.app import create_app
from image_service.programs.embedded import free_port
from image_service.settings import Settings
from image_service.storage.clients import aws_clients, provision
from image_service.storage.dynamo import ImageRepository
from image_service.storage.dynamo.codec import UPLOAD_TIME_INDEX

USER = "bench-user"
PAGE = 50
TARGET_ITEMS_PER_PAGE = 2 * PAGE
SECRET = "bench-secret-" + uuid.uuid4().hex
ITEMS_READ = "image_service_dynamodb_items_read_total"
NOW = datetime(2026, 11, 1, tzinfo=UTC)
# Share of images per status: most are done, a few are waiting or were refused.
STATUSES = {
    ImageStatus.READY: 0.90,
    ImageStatus.PENDING: 0.05,
    ImageStatus.REJECTED: 0.03,
    ImageStatus.QUARANTINED: 0.02,
}
VOCABULARY = 300  # distinct tags, used with Zipf-like frequencies as people tag


@dataclass(frozen=True)
class Pattern:
    name: str
    query: dict[str, str]


def make_records(count: int, rng: random.Random) -> list[ImageRecord]:
    tags = [f"tag{rank:03d}" for rank in range(VOCABULARY)]
    weights = [1 / (rank + 1) for rank in range(VOCABULARY)]
    statuses, shares = zip(*STATUSES.items(), strict=True)
    records = []
    for _ in range(count):
        image_id = str(uuid.uuid4())
        uploaded = NOW - timedelta(seconds=rng.randrange(730 * 24 * 3600))
        chosen = list(dict.fromkeys(rng.choices(tags, weights, k=rng.randrange(0, 5))))
        records.append(
            ImageRecord(
                user_id=USER,
                image_id=image_id,
                s3_key=f"images/{USER}/{image_id}/original",
                content_type="image/jpeg",
                status=rng.choices(statuses, shares)[0],
                upload_time=uploaded,
                updated_at=uploaded,
                tags=chosen,
                description="a photo",
                size=rng.randrange(200_000, 4_000_000),
                width=4000,
                height=3000,
            )
        )
    return records


def patterns(records: list[ImageRecord]) -> list[tuple[Pattern, int]]:
    """The access patterns of the issue, with how many images each matches."""
    week_end = NOW - timedelta(days=200)
    week_start = week_end - timedelta(days=7)
    chosen = [
        Pattern("no filter", {}),
        Pattern("one tag (most used)", {"tag": "tag000"}),
        Pattern("one tag (rare)", {"tag": "tag150"}),
        Pattern(
            "one tag + one week",
            {
                "tag": "tag000",
                "start_date": week_start.isoformat(),
                "end_date": week_end.isoformat(),
            },
        ),
        Pattern("status=pending", {"status": "pending"}),
        Pattern("status=quarantined", {"status": "quarantined"}),
    ]

    def matches(pattern: Pattern, record: ImageRecord) -> bool:
        query = pattern.query
        if "tag" in query and query["tag"] not in record.tags:
            return False
        if "status" in query and record.status.value != query["status"]:
            return False
        return "start_date" not in query or week_start <= record.upload_time <= week_end

    return [(p, sum(matches(p, r) for r in records)) for p in chosen]


async def load(settings: Settings, records: list[ImageRecord]) -> float:
    started = time.perf_counter()
    async with aws_clients(settings) as clients:
        repository = ImageRepository(clients.table, settings.table)
        chunk = 500
        await asyncio.gather(
            *(
                repository.put_many(records[start : start + chunk])
                for start in range(0, len(records), chunk)
            )
        )
    return time.perf_counter() - started


async def items_read(http: aiohttp.ClientSession, base: str) -> float:
    async with http.get(f"{base}/metrics") as response:
        text = await response.text()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == ITEMS_READ
    )


async def walk_api(
    http: aiohttp.ClientSession, base: str, pattern: Pattern, pages: int
) -> tuple[list[float], list[float]]:
    """(items read per page, seconds per page) for up to `pages` pages through the API."""
    reads, seconds = [], []
    cursor = None
    headers = {"Authorization": f"Bearer {issue_token(SECRET, USER)}"}
    for _ in range(pages):
        params = {**pattern.query, "limit": str(PAGE)}
        if cursor:
            params["cursor"] = cursor
        before = await items_read(http, base)
        started = time.perf_counter()
        async with http.get(f"{base}/images", params=params, headers=headers) as response:
            body = await response.json()
            assert response.status == 200, body
        seconds.append(time.perf_counter() - started)
        reads.append(await items_read(http, base) - before)
        cursor = body["next_cursor"]
        if cursor is None:
            break
    return reads, seconds


async def time_index(dynamodb: Any, table: str) -> list[dict[str, Any]]:
    """The user's whole upload-time index, newest first, as DynamoDB stores it."""
    items: list[dict[str, Any]] = []
    query: dict[str, Any] = {
        "TableName": table,
        "IndexName": UPLOAD_TIME_INDEX,
        "ScanIndexForward": False,
        "KeyConditionExpression": "user_id = :owner",
        "ExpressionAttributeValues": {":owner": {"S": USER}},
        "Limit": 2000,  # moto takes seconds per request at this size: stay within the timeout
    }
    while True:
        response = await dynamodb.query(**query)
        items.extend(response["Items"])
        if "LastEvaluatedKey" not in response:
            return items
        query["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def baseline_reads(index: list[dict[str, Any]], pattern: Pattern, pages: int) -> list[float]:
    """Items read per page by the service before its tag and status indexes: a query on the
    time index with the tag and status as a FilterExpression, 100 items per request (or what
    the page still needs, if more), until it holds a page and one look-ahead match; the next
    page starts after the page's last image. Replayed exactly over the stored index: running
    it on moto takes minutes, as moto walks its whole table for every request."""
    query = pattern.query
    start, end = query.get("start_date"), query.get("end_date")
    low = format_timestamp(datetime.fromisoformat(start)) if start else ""
    high = format_timestamp(datetime.fromisoformat(end)) + "#~" if end else "~"
    # The key condition selects the date range, and reads nothing outside it.
    ranged = [item for item in index if low <= item["upload_sort"]["S"] <= high]

    def match(item: dict[str, Any]) -> bool:
        tags = [tag["S"] for tag in item["tags"]["L"]]
        return ("tag" not in query or query["tag"] in tags) and (
            "status" not in query or item["status"]["S"] == query["status"]
        )

    filtered = "tag" in query or "status" in query
    reads: list[float] = []
    position = 0  # where the page's query starts: just after the last page's last image
    for _ in range(pages):
        read, matches, scan = 0, [], position
        while len(matches) <= PAGE and scan < len(ranged):
            missing = PAGE + 1 - len(matches)
            batch_end = min(len(ranged), scan + (max(missing, 100) if filtered else missing))
            read += batch_end - scan
            matches += [at for at in range(scan, batch_end) if match(ranged[at])][:missing]
            scan = batch_end
        reads.append(read)
        if len(matches) <= PAGE:
            break
        position = matches[PAGE - 1] + 1
    return reads


def ms(values: list[float], quantile: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--pages", type=int, default=5, help="pages walked per pattern")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()

    records = make_records(args.images, random.Random(args.seed))
    suffix = uuid.uuid4().hex[:8]
    async with moto() as endpoint:
        os.environ.update(
            AWS_ENDPOINT_URL=endpoint,
            AWS_ACCESS_KEY_ID="test",
            AWS_SECRET_ACCESS_KEY="test",  # the emulator's fixed credentials
            AWS_REGION="us-east-1",
            AWS_DEFAULT_REGION="us-east-1",
        )
        settings = Settings(
            jwt_secret=SECRET,
            bucket=f"bench-{suffix}",
            table=f"bench-{suffix}",
            queue_name=f"bench-{suffix}",
            s3_event_notifications=False,
            embedded_worker=False,
        )
        await provision(settings)
        loaded = await load(settings, records)
        tag_items = sum(len(r.tags) for r in records)
        print(
            f"loaded {len(records)} images + {tag_items} tag copies "
            f"({(len(records) + tag_items) / loaded:.0f} items/s through BatchWriteItem)\n"
        )

        runner = web.AppRunner(create_app(settings), access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        base = f"http://127.0.0.1:{port}"
        header = (
            f"{'pattern':<22} {'matches':>7} {'pages':>5} {'items/page':>10} {'max':>5} "
            f"{'p50 ms':>7} {'p95 ms':>7} | {'baseline items/page':>19} {'max':>6} "
            f"| {'items ratio':>11}  target"
        )
        print(header)
        print("-" * len(header))
        missed = []
        try:
            async with aws_clients(settings) as clients:
                index = await time_index(clients.dynamodb, settings.table)
            async with aiohttp.ClientSession() as http:
                for pattern, matching in patterns(records):
                    reads, seconds = await walk_api(http, base, pattern, args.pages)
                    base_reads = baseline_reads(index, pattern, args.pages)
                    mean = statistics.fmean(reads)
                    base_mean = statistics.fmean(base_reads)
                    met = max(reads) <= TARGET_ITEMS_PER_PAGE
                    if not met:
                        missed.append(pattern.name)
                    print(
                        f"{pattern.name:<22} {matching:>7} {len(reads):>5} {mean:>10.1f} "
                        f"{max(reads):>5.0f} {ms(seconds, 0.5):>7.1f} {ms(seconds, 0.95):>7.1f} "
                        f"| {base_mean:>19.1f} {max(base_reads):>6.0f} "
                        f"| {mean / base_mean:>11.3f}  {'met' if met else 'MISSED'}"
                    )
        finally:
            await runner.cleanup()
    print(
        f"\ntarget: <= {TARGET_ITEMS_PER_PAGE} items read per {PAGE}-item page: "
        + ("met for every pattern" if not missed else f"MISSED for {', '.join(missed)}")
    )
    if missed:
        raise SystemExit(1)


if __name__ == "__main__":
    asyncio.run(main())
