"""What the worker does with a job: scan, strip GPS, render variants, publish the image."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import IO, Any
from urllib.parse import unquote_plus

from image_service.domain import batch, events
from image_service.domain.batch import BatchOps
from image_service.domain.cdn import PURGE_JOB
from image_service.domain.completion import Completion
from image_service.domain.errors import ServiceError
from image_service.domain.imports import IMPORT_JOB, Imports
from image_service.domain.layout import image_prefix, quarantine_key
from image_service.domain.models import ImageRecord, ImageStatus, Variant
from image_service.domain.ports import Jobs, utc_now
from image_service.domain.workers import DEFER_SECONDS, Presence
from image_service.imaging.render import (
    Rendering,
    VariantSpec,
    render_variants,
    strip_jpeg_gps_file,
)
from image_service.imaging.spool import Spooled, spool
from image_service.logs import image_event
from image_service.storage.cdn import CloudFrontPurger
from image_service.storage.dynamo import ImageRepository
from image_service.storage.s3 import ObjectStore
from image_service.worker.scanners import Scanner, ScanSubject
from image_service.worker.webhooks import WebhookSender

log = logging.getLogger(__name__)


class PoisonJob(Exception):
    """A message that can never succeed; retries end in the dead-letter queue."""


# Bumped when what processing makes of an image changes in a way images processed before
# should get too (`image-service reprocess`). 2: photo metadata (EXIF) and ThumbHash.
PIPELINE_REVISION = 2


@dataclass(frozen=True, slots=True)
class ProcessingPolicy:
    variants: tuple[VariantSpec, ...]
    keep_gps: bool
    scan_url_expiry: int

    @property
    def fingerprint(self) -> str:
        """Names what processing makes of an image (each variant's name, size and formats;
        whether GPS is kept; the pipeline's revision), recorded on every image it makes
        ready: an image whose fingerprint differs was processed otherwise."""
        made = {
            "pipeline": PIPELINE_REVISION,
            "variants": [[spec.name, spec.max_side, list(spec.formats)] for spec in self.variants],
            "keep_gps": self.keep_gps,
        }
        canonical = json.dumps(made, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class ImageProcessor:
    def __init__(
        self,
        *,
        completion: Completion,
        imports: Imports,
        batch: BatchOps,
        purger: CloudFrontPurger,  # without a CDN, it drops (and counts) a purge queued before
        store: ObjectStore,
        repository: ImageRepository,
        scanners: Sequence[Scanner],
        policy: ProcessingPolicy,
        render_slots: int,
        webhooks: WebhookSender | None = None,
        jobs: Jobs | None = None,
        presence: Presence | None = None,
        observe_deferred: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._completion = completion
        self._imports = imports
        self._purger = purger
        self._batch = batch
        # Reprocess jobs for settings a live worker runs and this one does not go back to
        # the queue (domain/workers.py).
        self._jobs = jobs
        self._presence = presence
        self._observe_deferred = observe_deferred
        self._webhooks = webhooks
        self._store = store
        self._repository = repository
        self._scanners = scanners
        self._policy = policy
        self._clock = clock
        # Decoding and encoding are CPU-bound: a bounded number run at once, off the loop.
        self._render_slots = asyncio.Semaphore(render_slots)

    async def handle(self, job: Any) -> None:
        """Processes one queue message; raises to have it retried."""
        if not isinstance(job, dict):
            raise PoisonJob(f"not a job: {type(job).__name__}")
        if job.get("type") == "process":
            await self.process(str(job["user_id"]), str(job["image_id"]))
        elif job.get("type") == "reprocess":
            if await self._deferred(job):
                return
            force = job.get("force") is True
            await self.reprocess(str(job["user_id"]), str(job["image_id"]), force=force)
        elif job.get("type") == IMPORT_JOB:
            await self._imports.fetch(str(job["user_id"]), str(job["image_id"]))
        elif job.get("type") == batch.JOB_TYPE:
            await self._batch.work(str(job["user_id"]), str(job["job_id"]))
        elif job.get("type") == PURGE_JOB:
            await self._purger.purge(job)
        elif job.get("type") == "webhook":
            if self._webhooks is None:  # queued while webhooks were on; now they are off
                log.warning("webhook %s dropped: no IMAGE_SERVICE_WEBHOOK_SECRET", job.get("id"))
                return
            await self._webhooks.deliver(job)
        elif "Records" in job:
            await self._uploaded(job["Records"])
        elif job.get("Event") == "s3:TestEvent":
            return  # S3 confirms a new notification configuration this way
        else:
            raise PoisonJob(f"unknown job: {sorted(job)}")

    async def _uploaded(self, records: list[dict[str, Any]]) -> None:
        """S3's ObjectCreated notification for incoming/<user>/<image_id>."""
        for event in records:
            key = unquote_plus(event.get("s3", {}).get("object", {}).get("key", ""))
            parts = key.split("/")
            if len(parts) != 3 or parts[0] != "incoming":
                continue
            owner, image_id = unquote_plus(parts[1]), parts[2]
            try:
                await self._completion.complete_for(owner, image_id)
            except ServiceError as exc:
                if exc.http_status >= 500:
                    raise  # an outage: retry later
                # Rejected, already completed, or unknown: nothing more to do for this upload.
                log.info("upload event for %s/%s: %s", owner, image_id, exc.code)

    async def _deferred(self, job: dict[str, Any]) -> bool:
        """Whether a reprocess job is for settings a live worker runs and this one does not:
        then it is back on the queue, ``DEFER_SECONDS`` later, for a worker that runs them."""
        wanted = job.get("fingerprint")
        if not isinstance(wanted, str) or self._presence is None or self._jobs is None:
            return False
        if wanted == self._policy.fingerprint:
            return False
        if wanted not in await self._presence.live_fingerprints():
            return False  # nobody runs them now: this worker's settings are the deployment's
        await self._jobs.send(job, delay_seconds=DEFER_SECONDS)
        self._observe_deferred()
        log.warning(
            "reprocess job for %s/%s deferred: it asks for settings %s, this worker runs %s",
            job.get("user_id"),
            job.get("image_id"),
            wanted,
            self._policy.fingerprint,
        )
        return True

    async def process(self, user_id: str, image_id: str) -> None:
        record = await self._repository.get(user_id, image_id)
        if record is None or record.status is not ImageStatus.PROCESSING:
            return  # done already (a redelivered job) or deleted meanwhile: one result only
        async with self._original(record) as original:
            finding = await self._scan(record, original.file)
            if finding is not None:
                await self._quarantine(record, finding)
                return
            rendering = await self._render(original.file)
        ready = replace(await self._rendered(record, original, rendering), status=ImageStatus.READY)
        # Keys are fixed per image and variant, so a duplicate run rewrote the same objects;
        # the conditional write lets exactly one of them publish the record.
        owed = self._completion.events.owe(events.READY, ready)
        if await self._repository.replace_if_status(ready, ImageStatus.PROCESSING, owed=owed):
            await self._completion.events.delivered(owed, ready)
            log.info(
                "ready %s/%s (%d variants)",
                record.user_id,
                record.image_id,
                len(ready.variants),
                extra=image_event("image_ready", record.user_id, record.image_id),
            )
            return
        await self._take_back(ready)

    async def reprocess(self, user_id: str, image_id: str, *, force: bool = False) -> None:
        """Brings a ready image up to the current processing (``image-service reprocess``):
        variants rendered again, metadata read again, GPS removed if it is no longer kept.
        The image stays ready and served throughout; no webhook is sent, since it never
        stopped being ready (streams hear ``image.updated``, and a CDN is purged). Not scanned
        again: it passed the scanners to become ready."""
        record = await self._repository.get(user_id, image_id)
        if record is None or record.status is not ImageStatus.READY:
            return  # trashed, deleted or being deleted meanwhile: not this job's to touch
        if record.processed_with == self._policy.fingerprint and not force:
            return  # up to date (a redelivered job, or a second run of the command)
        async with self._original(record) as original:
            rendering = await self._render(original.file)
        updated = await self._rendered(record, original, rendering)
        # Streams hear it as updated; a CDN forgets its renditions (their edition may differ).
        owed = self._completion.events.owe(events.UPDATED, updated)
        if await self._repository.replace_if_status(updated, ImageStatus.READY, owed=owed):
            await self._completion.events.delivered(owed, updated)
            # Variants no longer configured: their objects go once no record names them.
            kept = {variant.key for variant in updated.variants}
            await self._store.delete([v.key for v in record.variants if v.key not in kept])
            log.info(
                "reprocessed %s/%s (%d variants)",
                record.user_id,
                record.image_id,
                len(updated.variants),
                extra=image_event("image_reprocessed", record.user_id, record.image_id),
            )
            return
        await self._take_back(updated)

    @asynccontextmanager
    async def _original(self, record: ImageRecord) -> AsyncIterator[Spooled]:
        """The original in bounded memory (spool.py), however large, GPS removed from a JPEG
        (rewritten in S3 too) unless it is kept; closed when the block ends."""
        async with aclosing(self._store.read(record.s3_key)) as chunks:
            original = await spool(chunks)
        try:
            if record.content_type == "image/jpeg" and not self._policy.keep_gps:
                loop = asyncio.get_running_loop()
                stripped = await loop.run_in_executor(None, strip_jpeg_gps_file, original.file)
                if stripped is not None:
                    await self._store.put_bytes(
                        record.s3_key, stripped.file, content_type=record.content_type
                    )
                    original.close()
                    original = stripped
            yield original
        finally:
            original.close()

    async def _render(self, file: IO[bytes]) -> Rendering:
        """Variants and metadata, decoded off the loop in one of the bounded render slots."""
        async with self._render_slots:
            render = functools.partial(
                render_variants, file, self._policy.variants, keep_gps=self._policy.keep_gps
            )
            return await asyncio.get_running_loop().run_in_executor(None, render)

    async def _store_variants(self, record: ImageRecord, rendering: Rendering) -> list[Variant]:
        prefix = image_prefix(record.user_id, record.image_id)
        variants = []
        for rendered in rendering.variants:
            key = f"{prefix}{rendered.name}{rendered.extension}"
            await self._store.put_bytes(key, rendered.data, content_type=rendered.content_type)
            variants.append(
                Variant(
                    name=rendered.name,
                    format=rendered.format,
                    content_type=rendered.content_type,
                    key=key,
                    width=rendered.width,
                    height=rendered.height,
                    size=len(rendered.data),
                )
            )
        return variants

    async def _rendered(
        self, record: ImageRecord, original: Spooled, rendering: Rendering
    ) -> ImageRecord:
        """``record`` as ``rendering`` of ``original`` makes it, its variants stored."""
        return replace(
            record,
            size=original.size,
            sha256=original.sha256,
            variants=await self._store_variants(record, rendering),
            placeholder=rendering.dominant_color,
            photo=rendering.photo,
            thumbhash=rendering.thumbhash,
            processed_with=self._policy.fingerprint,
            updated_at=self._clock(),
        )

    async def _take_back(self, unpublished: ImageRecord) -> None:
        """The image changed while this job ran, so its record was not written: takes back
        the variant objects it wrote that the image's record does not name, so nothing is
        orphaned (all of them if the image is gone or going)."""
        current = await self._repository.get(unpublished.user_id, unpublished.image_id)
        named = set()
        if current is not None and current.status is not ImageStatus.DELETING:
            named = {variant.key for variant in current.variants}
        await self._store.delete([v.key for v in unpublished.variants if v.key not in named])

    async def _scan(self, record: ImageRecord, file: IO[bytes]) -> str | None:
        """The first finding of the chain, or None when every scanner passes it."""
        if not self._scanners:
            return None
        url = await self._store.presign_get(
            record.s3_key,
            expires_in=self._policy.scan_url_expiry,
            content_type=record.content_type,
            content_disposition="inline",
        )
        subject = ScanSubject(record.user_id, record.image_id, record.content_type, file, url)
        for scanner in self._scanners:
            verdict = await scanner.scan(subject)  # ScannerUnavailable: retried, never ready
            if not verdict.clean:
                return f"{verdict.scanner}: {verdict.finding}"
        return None

    async def _quarantine(self, record: ImageRecord, finding: str) -> None:
        target = quarantine_key(record)
        stored = await self._store.head(record.s3_key)
        if stored is not None:
            await self._store.copy(
                record.s3_key, target, etag=stored.etag, content_type=record.content_type
            )
        await self._store.delete(
            await self._store.keys_under(image_prefix(record.user_id, record.image_id))
        )
        quarantined = replace(
            record,
            status=ImageStatus.QUARANTINED,
            rejection_reason=finding,
            variants=[],
            updated_at=self._clock(),
        )
        owed = self._completion.events.owe(events.QUARANTINED, quarantined)
        if await self._repository.replace_if_status(quarantined, ImageStatus.PROCESSING, owed=owed):
            await self._completion.events.delivered(owed, quarantined)
        log.warning(
            "quarantined %s/%s: %s",
            record.user_id,
            record.image_id,
            finding,
            extra=image_event("image_quarantined", record.user_id, record.image_id),
        )
