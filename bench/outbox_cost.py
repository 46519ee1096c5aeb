"""What the outbox costs a change: DynamoDB write units, from the items the service really writes,
and CPU, measured against the change's own writes in the same run.

For each change that owes an event (a photo made ready, trashed, deleted for good), with and
without a webhook destination, it builds the transaction the repository sends
(``ImageRecords._image_writes`` and ``_owed_writes``) and prices it by DynamoDB's rules: an
item's size is its attribute names and values; a write costs one unit per started KiB, twice
inside a transaction; each global index an item is in costs a write of its own (the attention
index projects everything); deleting an outbox item after its send is a write, and its index
entry's removal another. CPU: the time to build the change's writes, and the outbox's on top.

    .venv/bin/python -m bench.outbox_cost
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from image_service.domain import events
from image_service.domain.events import ImageEvents
from image_service.domain.models import ImageRecord, ImageStatus, Variant
from image_service.imaging.exif import PhotoMetadata
from image_service.storage.dynamo.codec import INDEXES
from image_service.storage.dynamo.records import ImageRecords, NamedWrite

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
SECRET = "whsec_" + "Y2hhb3Mtd2ViaG9vay1zZWNyZXQtMzItYnl0ZXMhIQ=="
INDEXED = {partition for _, partition, _ in INDEXES} - {"user_id"}


def _value_size(value: dict[str, Any]) -> int:
    ((kind, content),) = value.items()
    if kind == "S":
        return len(content.encode())
    if kind == "N":
        return math.ceil(len(content.lstrip("-").replace(".", "")) / 2) + 1
    if kind == "SS":
        return sum(len(item.encode()) for item in content)
    if kind in {"BOOL", "NULL"}:
        return 1
    if kind == "L":
        return 3 + sum(1 + _value_size(item) for item in content)
    if kind == "M":
        return 3 + sum(1 + len(name.encode()) + _value_size(v) for name, v in content.items())
    raise ValueError(kind)


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _units(size: int) -> int:
    return max(1, math.ceil(size / 1024))


def price(writes: list[NamedWrite]) -> int:
    """Write units of ``writes`` sent together (one transaction if more than one)."""
    factor = 2 if len(writes) > 1 else 1
    total = 0
    for _, request in writes:
        ((_kind, body),) = request.items()
        item = body.get("Item")
        if item is None:  # a delete or an update: priced as a small item
            total += factor
            continue
        units = _units(item_size(item))
        indexes = sum(1 for name in INDEXED if name in item)
        total += factor * units + indexes * units
    return total


class _Nothing:
    async def send(self, job: dict[str, Any], *, delay_seconds: int = 0) -> None: ...

    async def drop_jobs(self, jobs: Any) -> None: ...


def _events(webhooks: bool) -> ImageEvents:
    return ImageEvents(
        _Nothing(),
        outbox=_Nothing(),
        webhook_url="https://hooks.example.com/in" if webhooks else None,
        signing=webhooks,
        allow_private=False,
        callback_masters=(),
        clock=lambda: NOW,
    )


def photo() -> ImageRecord:
    variants = [
        Variant(
            name, fmt, f"image/{fmt}", f"images/alice/x/{name}.{fmt}", side, side * 3 // 4, 9000
        )
        for name, side in (("thumb", 256), ("medium", 1024))
        for fmt in ("jpeg", "webp")
    ]
    return ImageRecord(
        user_id="alice",
        image_id="0b5c8f3e-7d2a-4f61-9a1e-2c4b6d8e0f13",
        s3_key="images/alice/0b5c8f3e-7d2a-4f61-9a1e-2c4b6d8e0f13/original",
        content_type="image/jpeg",
        status=ImageStatus.PROCESSING,
        upload_time=NOW,
        updated_at=NOW,
        tags=["holiday", "beach"],
        description="Sunset over the bay",
        filename="IMG_0042.jpg",
        counted_bytes=2_400_000,
        size=2_400_000,
        width=4032,
        height=3024,
        sha256="9f" * 32,
        uploaded_sha256="9f" * 32,
        variants=variants,
        photo=PhotoMetadata(
            taken_at=NOW, camera="Canon EOS R6", lens="RF 24-105mm", f_number=4.0, iso=200
        ),
        placeholder="#a0b0c0",
        thumbhash="3OcRJYB4d3h/iIeHeEh3eIhw+j3A",
        processed_with="396a5f9a79bff266",
        revision=3,
    )


CHANGES: list[tuple[str, str, Callable[[ImageRecord], ImageRecord | None]]] = [
    ("made ready", events.READY, lambda r: replace(r, status=ImageStatus.READY)),
    (
        "trashed",
        events.TRASHED,
        lambda r: replace(r, status=ImageStatus.TRASHED, trashed_at=NOW, trashed_from=r.status),
    ),
    ("deleted for good", events.DELETED, lambda r: None),
]


def main() -> None:
    records = ImageRecords.__new__(ImageRecords)  # only its item builders: no table behind
    records.table = "images"
    records._dead_record_ttl = None
    before = replace(photo(), status=ImageStatus.READY)
    print("| Change | Its own writes | With the outbox | Extra | CPU: its writes | outbox |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for webhooks in (False, True):
        for name, event_type, change in CHANGES:
            old = photo() if event_type == events.READY else before
            new = change(old)
            own, stored = records._image_writes(old, new)
            owed = _events(webhooks).owe(event_type, new or old)
            outbox = records._owed_writes(owed, stored or old)
            base = price(own)
            total = price(own + outbox)
            # After the send: each job's item deleted, and its index entry with it.
            total += 2 * len(owed.jobs)
            rounds = 2000
            started = time.perf_counter()
            for _ in range(rounds):
                records._image_writes(old, new)
            own_us = (time.perf_counter() - started) / rounds * 1e6
            started = time.perf_counter()
            for _ in range(rounds):
                records._owed_writes(_events(webhooks).owe(event_type, new or old), stored or old)
            outbox_us = (time.perf_counter() - started) / rounds * 1e6
            label = f"{name}, {'one webhook' if webhooks else 'no webhook'}"
            print(
                f"| {label} | {base} WCU | {total} WCU | +{total - base} WCU "
                f"| {own_us:.0f} µs | +{outbox_us:.0f} µs |"
            )


if __name__ == "__main__":
    main()
