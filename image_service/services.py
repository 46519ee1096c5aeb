"""Assembling the service's parts from settings: shared by the API process and the worker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

import aiohttp

from image_service.domain.cursor import CursorCodec
from image_service.domain.images import ImageService, UploadPolicy, utc_now
from image_service.domain.ratelimit import TokenBucketLimiter
from image_service.imaging.inspect import InspectionLimits
from image_service.imaging.render import VariantSpec
from image_service.metrics import ServiceMetrics
from image_service.settings import Settings, cursor_key
from image_service.storage.clients import aws_clients
from image_service.storage.dynamo import IdempotencyStore, ImageRepository
from image_service.storage.presign import Presigner
from image_service.storage.queue import JobQueue
from image_service.storage.s3 import ObjectStore
from image_service.worker.pipeline import ImageProcessor, ProcessingPolicy
from image_service.worker.scanners import ClamdScanner, Scanner, WebhookScanner

# How long a scanner's presigned GET of the original lives.
SCAN_URL_EXPIRY_SECONDS = 300


@dataclass(frozen=True, slots=True)
class Services:
    store: ObjectStore
    repository: ImageRepository
    jobs: JobQueue
    images: ImageService
    processor: ImageProcessor


def variant_specs(settings: Settings) -> tuple[VariantSpec, ...]:
    return tuple(
        VariantSpec(name, int(side), settings.variant_formats)
        for name, _, side in (spec.partition(":") for spec in settings.variants)
    )


@asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utc_now,
    metrics: ServiceMetrics | None = None,
) -> AsyncIterator[Services]:
    async with aws_clients(settings) as clients, AsyncExitStack() as stack:
        if metrics is not None:
            clients.dynamodb_wire.observe(metrics.observe_dynamodb_call)
        presigner = await Presigner.learn(
            clients.s3_presign, settings.bucket, clients.credentials, clock=clock
        )
        store = ObjectStore(clients.s3, presigner, settings.bucket)
        repository = ImageRepository(
            clients.dynamodb_wire, settings.table, dead_record_ttl=settings.dead_record_ttl_seconds
        )
        jobs = JobQueue(clients.sqs, settings.queue_name, long_poll_client=clients.sqs_long_poll)
        images = ImageService(
            store=store,
            repository=repository,
            idempotency=IdempotencyStore(clients.dynamodb_wire, settings.table),
            jobs=jobs,
            cursors=CursorCodec(cursor_key(settings)),
            policy=UploadPolicy(
                allowed_content_types=settings.allowed_content_types,
                max_upload_bytes=settings.max_upload_bytes,
                upload_url_expiry=settings.upload_url_expiry,
                download_url_expiry=settings.download_url_expiry,
                inspection=InspectionLimits(
                    max_pixels=settings.max_pixels,
                    max_frames=settings.max_frames,
                    max_animation_pixels=settings.max_animation_pixels,
                ),
                inspection_concurrency=settings.inspection_concurrency,
                max_images_per_user=settings.max_images_per_user,
                max_bytes_per_user=settings.max_bytes_per_user,
                usage_cache_seconds=settings.usage_cache_seconds,
            ),
            upload_limiter=TokenBucketLimiter(
                per_minute=settings.upload_rate_per_minute, burst=settings.upload_burst
            ),
            clock=clock,
        )
        scanners: list[Scanner] = []
        if settings.clamd_address:
            scanners.append(ClamdScanner(settings.clamd_address))
        if settings.moderation_webhook_url:
            http = await stack.enter_async_context(aiohttp.ClientSession())
            scanners.append(WebhookScanner(settings.moderation_webhook_url, http))
        processor = ImageProcessor(
            images=images,
            store=store,
            repository=repository,
            scanners=scanners,
            policy=ProcessingPolicy(
                variants=variant_specs(settings),
                keep_gps=settings.keep_gps,
                scan_url_expiry=SCAN_URL_EXPIRY_SECONDS,
            ),
            render_slots=settings.inspection_concurrency,
            clock=clock,
        )
        yield Services(store, repository, jobs, images, processor)
