"""Listing: newest first, filters, and cursor pages that skip, repeat and fall short of nothing."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests import images
from tests.integration.conftest import Api, MakeApi

# The table's behaviour, under both transports (IMAGE_SERVICE_AWS_TRANSPORT): every test here
# that makes an API runs once on each.
BOTH_TRANSPORTS = True

TAGS = ["cat", "dog", "beach", "city", "night"]
START = datetime(2026, 9, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Planted:
    image_id: str
    upload_time: datetime
    tags: frozenset[str]
    status: str


async def _plant(api: Api, count: int, ready_every: int) -> list[Planted]:
    """`count` images over 60 days, several sharing a timestamp: every n-th one completed and
    processed, every third one rejected at completion, the rest pending."""
    rng = random.Random(7)
    planted = []
    for index in range(count):
        # Whole hours only, so many images share an upload time: ties must page correctly too.
        moment = START + timedelta(hours=rng.randrange(60 * 24 // 6) * 6)
        tags = rng.sample(TAGS, rng.randrange(0, 3))
        api.clock.pinned = moment
        if index % ready_every == 0:
            upload, status, _ = await api.upload(images.gif(), content_type="image/gif", tags=tags)
            assert status == 200
            state = "ready"
        else:
            upload = await api.upload_url(content_type="image/png", tags=tags)
            state = "pending"
            if index % 3 == 1:
                assert await api.send_to_s3(upload, images.HTML) == 200
                status, _, _ = await api.call("POST", f"/images/{upload['image_id']}/complete")
                assert status == 422
                state = "rejected"
        planted.append(Planted(upload["image_id"], moment, frozenset(tags), state))
    api.clock.pinned = None
    return planted


def _tagged(p: Planted, *tags: str) -> bool:
    """Listed by these tags: it carries them and its upload was completed (pending uploads are
    listed by time and status only)."""
    return set(tags) <= p.tags and p.status != "pending"


async def _all_pages(api: Api, query: dict[str, Any], limit: int) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        params = [
            (k, v)
            for k, values in query.items()
            for v in (values if isinstance(values, list) else [values])
        ]
        params.append(("limit", str(limit)))
        if cursor:
            params.append(("cursor", cursor))
        status, page, _ = await api.call("GET", "/images", params=params)
        assert status == 200, page
        ids = [item["image_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is not None:
            assert len(ids) == limit, "a short page while more matches exist"
        seen.extend(ids)
        if cursor is None:
            return seen


async def _items_read(api: Api, query: dict[str, Any], *, limit: int) -> tuple[float, float]:
    """(DynamoDB queries, items read) for the first page of `query`: the least of up to three
    tries 0.3 s apart, since the embedded worker's outbox relay queries the same table for a
    moment every 2 s (and its calls are counted with the request's)."""
    tries = []
    for attempt in range(3):
        if attempt:
            await asyncio.sleep(0.3)
        tries.append(await _items_read_once(api, query, limit=limit))
        if tries[-1][0] <= 1:  # nothing else's queries in the count: no need to ask again
            break
    return min(tries)


async def _items_read_once(api: Api, query: dict[str, Any], *, limit: int) -> tuple[float, float]:
    before = await api.metrics()
    status, _, _ = await api.call("GET", "/images", params={**query, "limit": str(limit)})
    assert status == 200
    after = await api.metrics()

    def delta(name: str, labels: tuple[tuple[str, str], ...] = ()) -> float:
        return after.get((name, labels), 0.0) - before.get((name, labels), 0.0)

    return (
        delta("image_service_dynamodb_requests_total", (("operation", "Query"),)),
        delta("image_service_dynamodb_items_read_total"),
    )


def _expected(planted: list[Planted], keep: Any) -> list[str]:
    chosen = [p for p in planted if keep(p)]
    chosen.sort(key=lambda p: (p.upload_time, p.image_id), reverse=True)
    return [p.image_id for p in chosen]


WEEK_START = START + timedelta(days=20)
WEEK_END = START + timedelta(days=27)

# (name, query, which planted images match)
CASES: list[tuple[str, dict[str, Any], Any]] = [
    ("all", {}, lambda p: True),
    ("one-tag", {"tag": "cat"}, lambda p: _tagged(p, "cat")),
    ("two-tags", {"tag": ["cat", "DOG"]}, lambda p: _tagged(p, "cat", "dog")),
    ("status", {"status": "ready"}, lambda p: p.status == "ready"),
    ("status-pending", {"status": "pending"}, lambda p: p.status == "pending"),
    (
        "date-range",
        {"start_date": WEEK_START.isoformat(), "end_date": WEEK_END.isoformat()},
        lambda p: WEEK_START <= p.upload_time <= WEEK_END,
    ),
    (
        "tag-and-whole-days",
        {"tag": "beach", "start_date": "2026-09-14", "end_date": "2026-09-28"},
        lambda p: (
            _tagged(p, "beach")
            and datetime(2026, 9, 14, tzinfo=UTC)
            <= p.upload_time
            < datetime(2026, 9, 29, tzinfo=UTC)
        ),
    ),
    (
        "tag-status-dates",
        {"tag": "dog", "status": "rejected", "start_date": "2026-09-05"},
        lambda p: (
            _tagged(p, "dog")
            and p.status == "rejected"
            and p.upload_time >= datetime(2026, 9, 5, tzinfo=UTC)
        ),
    ),
    (
        "end-only-naive-is-utc",
        {"end_date": "2026-09-10T00:00:00"},
        lambda p: p.upload_time <= datetime(2026, 9, 10, tzinfo=UTC),
    ),
    (
        "start-only-with-offset",
        {"start_date": "2026-10-20T02:00:00+02:00"},
        lambda p: p.upload_time >= datetime(2026, 10, 20, tzinfo=UTC),
    ),
    ("no-match", {"tag": "absent"}, lambda p: False),
]


# Served by an index whose key does all the selecting: a page reads what it returns.
INDEXED = {
    "all",
    "one-tag",
    "status",
    "status-pending",
    "date-range",
    "tag-and-whole-days",
    "no-match",
}


@pytest.mark.long
async def test_pages_are_complete_and_ordered_under_every_filter(make_api: MakeApi) -> None:
    """A hundred and twenty images, planted once through the API, read back page by page."""
    api = await make_api(upload_burst=1000)
    planted = await _plant(api, count=120, ready_every=12)
    for name, query, keep in CASES:
        expected = _expected(planted, keep)
        assert expected or name == "no-match", f"{name}: the plant should produce matches"
        for limit in (7, 100):
            assert await _all_pages(api, query, limit) == expected, (name, limit)
        if name in INDEXED:
            # One query reading the page and one look-ahead item, however sparse the matches.
            assert await _items_read(api, query, limit=5) == (1, min(len(expected), 6)), name

    status, page, _ = await api.call("GET", "/images")
    assert status == 200
    assert len(page["items"]) == 20, "the default page size"
    assert page["next_cursor"] is not None


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "ten"},
        {"start_date": "yesterday"},
        {"end_date": "2026-13-01"},
        {"status": "lost"},
        {"unknown": "1"},
        {"tag": "x" * 65},
        {"cursor": "x" * 2000},
    ],
)
async def test_bad_queries_are_422(api: Api, params: dict[str, str]) -> None:
    status, payload, _ = await api.call("GET", "/images", params=params)
    assert (status, payload["error"]["code"]) == (422, "validation_error")


async def test_reversed_date_range_is_422(api: Api) -> None:
    status, payload, _ = await api.call(
        "GET", "/images", params={"start_date": "2026-10-02", "end_date": "2026-10-01"}
    )
    assert (status, payload["error"]["code"]) == (422, "invalid_date_range")


async def test_forged_and_foreign_cursors_are_refused(api: Api) -> None:
    for _ in range(3):
        await api.upload_url()
    status, page, _ = await api.call("GET", "/images", params={"limit": "1"})
    cursor = page["next_cursor"]
    body, mac = cursor.split(".")
    forged = [
        "garbage",
        "",
        body + "." + mac[::-1],
        body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1] + "." + mac,
        "%%%." + mac,
    ]
    for bad in forged:
        status, payload, _ = await api.call("GET", "/images", params={"cursor": bad})
        if bad == "":
            assert status == 200, "an empty cursor is no cursor"
            continue
        assert (status, payload["error"]["code"]) == (422, "invalid_cursor"), bad
    # Genuine, but minted for alice: useless to anybody else.
    status, payload, _ = await api.call("GET", "/images", user="bob", params={"cursor": cursor})
    assert (status, payload["error"]["code"]) == (422, "invalid_cursor")
