"""Assembling the service's parts from settings: shared by the API process and the worker."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

import aiohttp

from image_service import tracing
from image_service.domain.albums import Albums
from image_service.domain.apikeys import ApiKeys
from image_service.domain.batch import BatchOps
from image_service.domain.callbacks import privately_reachable
from image_service.domain.completion import Completion
from image_service.domain.cursor import CursorCodec
from image_service.domain.events import ImageEvents, Observe, share_viewed
from image_service.domain.imports import Fetcher, Imports
from image_service.domain.library import Library
from image_service.domain.models import FocalPoint, ImageRecord, ImageStatus, ListFilter
from image_service.domain.policy import UploadPolicy
from image_service.domain.ports import (
    Clock,
    IdempotencyKeys,
    Jobs,
    Listing,
    Objects,
    Outbox,
    Records,
    utc_now,
)
from image_service.domain.quota import Quota
from image_service.domain.ratelimit import TokenBucketLimiter
from image_service.domain.renditions import (
    RenditionPolicy,
    Renditions,
    RenditionSigner,
    RenditionSpec,
)
from image_service.domain.shares import Share, Shares, ShareUrls
from image_service.domain.trash import Trash
from image_service.domain.uploads import Uploads
from image_service.domain.watch import StatusWatcher
from image_service.domain.workers import Presence
from image_service.imaging.inspect import InspectionLimits
from image_service.imaging.render import RenderedVariant, VariantSpec, render_rendition
from image_service.metrics import ServiceMetrics
from image_service.programs.faults import after_commit_fault
from image_service.settings import (
    IdentitySettings,
    ProcessingSettings,
    QuotaSettings,
    RenditionSettings,
    Settings,
    UploadSettings,
    WebhookSettings,
    callback_masters,
    cursor_keys,
    render_keys,
)
from image_service.storage.cdn import CloudFrontPurger, ObservePurge
from image_service.storage.clients import AwsClients, aws_clients, proxy_for
from image_service.storage.dynamo import IdempotencyStore, ImageRepository
from image_service.storage.presign import BotocorePresigner, Presigner
from image_service.storage.provision import dead_letter_queue_name
from image_service.storage.queue import JobQueue
from image_service.storage.s3 import ObjectStore
from image_service.worker.fetch import UrlFetcher
from image_service.worker.pipeline import ImageProcessor, ProcessingPolicy
from image_service.worker.scanners import ClamdScanner, Scanner, WebhookScanner
from image_service.worker.webhooks import PublicOnlyResolver, WebhookSender

# How long a scanner's presigned GET of the original lives.
SCAN_URL_EXPIRY_SECONDS = 300


@dataclass(frozen=True, slots=True)
class Images:
    """The image lifecycle's five jobs, over the same ports."""

    uploads: Uploads
    completion: Completion
    library: Library
    trash: Trash
    imports: Imports


@dataclass(frozen=True, slots=True)
class Services:
    store: ObjectStore
    repository: ImageRepository
    jobs: JobQueue
    images: Images
    processor: ImageProcessor
    renditions: Renditions
    watcher: StatusWatcher
    clients: AwsClients
    presence: Presence  # a worker's heartbeat, which its program runs (domain/workers.py)
    api_keys: ApiKeys
    albums: Albums
    shares: Shares
    share_urls: ShareUrls
    batch: BatchOps


class SharedTargets:
    """A share link's pages of an album or a tag: as the album's own pages, and as the tag's
    listing of ready images."""

    def __init__(self, albums: Albums, listing: Listing, cursors: CursorCodec) -> None:
        self._albums = albums
        self._listing = listing
        self._cursors = cursors

    async def album_page(
        self, owner: str, album_id: str, limit: int, cursor: str | None
    ) -> tuple[list[ImageRecord], str | None]:
        return await self._albums.owner_page(owner, album_id, limit=limit, cursor=cursor)

    async def tag_page(
        self, owner: str, tag: str, limit: int, cursor: str | None
    ) -> tuple[list[ImageRecord], str | None]:
        after = self._cursors.decode(owner, cursor) if cursor else None
        records, position = await self._listing.list_page(
            owner, ListFilter(tags=(tag,), status=ImageStatus.READY), limit, after
        )
        return records, None if position is None else self._cursors.encode(owner, position)


def rendition_policy(settings: RenditionSettings, identity: IdentitySettings) -> RenditionPolicy:
    """The renditions' policy, from their settings; their URLs' keys derive from the identity's
    secrets when none of their own is set."""
    presets = {}
    for preset in settings.render_presets:
        name, _, rest = preset.partition("=")
        size, _, fit = rest.partition(":")
        width, _, height = size.partition("x")
        presets[name] = RenditionSpec(int(width), int(height), fit, "auto", None)
    return RenditionPolicy(
        widths=settings.render_widths,
        qualities=settings.render_qualities,
        presets=presets,
        url_window=settings.render_url_window_seconds,
        max_renders=settings.max_concurrent_renders,
        keys=render_keys(settings, identity),
        memory_bytes=settings.rendition_memory_bytes,
        max_renders_per_user=settings.max_renders_per_user,
        max_age=settings.rendition_max_age_seconds,
    )


def upload_policy(
    uploads: UploadSettings,
    quotas: QuotaSettings,
    *,
    processing: ProcessingSettings,
    webhooks: WebhookSettings,
) -> UploadPolicy:
    """The image lifecycle's policy: its uploads' and quotas' settings, and the two facts it
    takes from other concerns (whether originals may keep GPS; whether callbacks may be
    private)."""
    return UploadPolicy(
        allowed_content_types=uploads.allowed_content_types,
        max_upload_bytes=uploads.max_upload_bytes,
        max_multipart_bytes=uploads.max_multipart_bytes,
        multipart_part_bytes=uploads.multipart_part_bytes,
        upload_url_expiry=uploads.upload_url_expiry,
        download_url_expiry=uploads.download_url_expiry,
        inspection=InspectionLimits(
            max_pixels=uploads.max_pixels,
            max_frames=uploads.max_frames,
            max_animation_pixels=uploads.max_animation_pixels,
        ),
        inspection_concurrency=uploads.inspection_concurrency,
        max_completions_per_user=uploads.max_completions_per_user,
        max_open_multipart_per_user=uploads.max_open_multipart_per_user,
        max_imports_per_user=uploads.max_imports_per_user,
        max_images_per_user=quotas.max_images_per_user,
        max_bytes_per_user=quotas.max_bytes_per_user,
        usage_cache_seconds=quotas.usage_cache_seconds,
        trash_days=quotas.trash_days,
        keep_gps=processing.keep_gps,
        callbacks_to_private=webhooks.webhook_allow_private,
    )


def image_events(
    settings: WebhookSettings,
    jobs: Jobs,
    *,
    outbox: Outbox,
    masters: tuple[str, ...],
    clock: Clock,
    observe: Observe = lambda _type, _outcome: None,
    purge_cdn: bool = False,
) -> ImageEvents:
    """The image events, where the webhook settings send them and signed as they say;
    ``masters``: ``callback_masters(settings)``, derived once by the caller, which hands them
    to the webhook sender too. ``purge_cdn``: changes that hide an image's renditions owe a
    CDN purge job."""
    return ImageEvents(
        jobs,
        outbox=outbox,
        webhook_url=settings.webhook_url,
        signing=settings.webhook_secret is not None,
        callback_masters=masters,
        allow_private=settings.webhook_allow_private,
        clock=clock,
        observe=observe,
        after_commit=after_commit_fault(),
        purge_cdn=purge_cdn,
        purge_hook=settings.webhook_cdn_purge,
    )


def image_lifecycle(
    *,
    store: Objects,
    repository: Records,
    listing: Listing,
    idempotency: IdempotencyKeys,
    jobs: Jobs,
    events: ImageEvents,
    settings: Settings,
    clock: Clock,
    watcher: StatusWatcher | None = None,
    fetcher: Fetcher | None = None,
) -> Images:
    """The image lifecycle's five jobs over the ports, with the policy ``settings`` give: the
    one wiring of the domain, for every process and for the domain's unit tier. ``fetcher``:
    what a worker fetches imports with."""
    policy = upload_policy(settings, settings, processing=settings, webhooks=settings)
    quota = Quota(repository, policy)
    completion = Completion(
        store=store,
        repository=repository,
        jobs=jobs,
        policy=policy,
        quota=quota,
        events=events,
        clock=clock,
    )
    return Images(
        uploads=Uploads(
            store=store,
            repository=repository,
            idempotency=idempotency,
            policy=policy,
            quota=quota,
            upload_limiter=TokenBucketLimiter(
                per_minute=settings.upload_rate_per_minute, burst=settings.upload_burst
            ),
            events=events,
            clock=clock,
        ),
        completion=completion,
        library=Library(
            store=store,
            repository=repository,
            listing=listing,
            cursors=CursorCodec(*cursor_keys(settings)),
            policy=policy,
            events=events,
            watcher=watcher,
            clock=clock,
        ),
        trash=Trash(
            store=store,
            repository=repository,
            listing=listing,
            jobs=jobs,
            policy=policy,
            quota=quota,
            events=events,
            clock=clock,
        ),
        imports=Imports(
            store=store,
            repository=repository,
            jobs=jobs,
            completion=completion,
            policy=policy,
            quota=quota,
            limiter=TokenBucketLimiter(
                per_minute=settings.import_rate_per_minute,
                burst=settings.import_burst,
                limited="imports",
            ),
            events=events,
            allow_private=settings.import_allow_private,
            fetcher=fetcher,
            clock=clock,
        ),
    )


class ThreadRenderer:
    """Renders in a thread pool of their own, as many threads as renders may run at once: a
    burst of large renders never takes the threads completions decode in. A render whose
    request gave up keeps its thread until Pillow is done, and only then reports it free
    (``Render``'s contract), so the bound counts what really runs."""

    def __init__(
        self, threads: int, render: Callable[..., RenderedVariant] = render_rendition
    ) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="render")
        self._render = render

    async def __call__(
        self,
        data: bytes,
        spec: RenditionSpec,
        fmt: str,
        focal: FocalPoint | None,
        done: Callable[[], None],
    ) -> RenderedVariant:
        loop = asyncio.get_running_loop()

        def finished(_: object) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody counts now
                loop.call_soon_threadsafe(done)

        job = functools.partial(
            self._render,
            data,
            width=spec.width,
            height=spec.height,
            fit=spec.fit,
            fmt=fmt,
            quality=spec.quality,
            gravity=spec.gravity or "center",
            focal=None if focal is None else (focal.x, focal.y),
        )
        with tracing.span(
            "render rendition",
            width=spec.width or 0,
            height=spec.height or 0,
            format=fmt,
            gravity=spec.gravity or "",
        ):
            try:
                future = self._pool.submit(job)
            except BaseException:
                done()
                raise
            future.add_done_callback(finished)
            return await asyncio.wrap_future(future)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def processing_policy(settings: ProcessingSettings) -> ProcessingPolicy:
    return ProcessingPolicy(
        variants=variant_specs(settings),
        keep_gps=settings.keep_gps,
        scan_url_expiry=SCAN_URL_EXPIRY_SECONDS,
    )


def variant_specs(settings: ProcessingSettings) -> tuple[VariantSpec, ...]:
    return tuple(
        VariantSpec(name, int(side), settings.variant_formats)
        for name, _, side in (spec.partition(":") for spec in settings.variants)
    )


async def object_store(
    clients: AwsClients, settings: Settings, *, clock: Callable[[], datetime] = utc_now
) -> ObjectStore:
    """The bucket, with URLs signed by botocore, or (direct transport) by this service."""
    if not clients.direct:
        presigner = await BotocorePresigner.learn(clients.s3_presign, settings.bucket)
        return ObjectStore(clients.s3, presigner, settings.bucket)
    direct = await Presigner.learn(
        clients.s3_presign, settings.bucket, clients.credentials, clock=clock
    )
    # URLs for the service's own reads, at its own address (clients may use another).
    reader = direct
    if clients.s3_presign is not clients.s3:
        reader = await Presigner.learn(
            clients.s3, settings.bucket, clients.credentials, clock=clock
        )
    return ObjectStore(
        clients.s3,
        direct,
        settings.bucket,
        reader=reader,
        http=clients.http,
        proxy=proxy_for(reader.origin),
    )


@asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utc_now,
    metrics: ServiceMetrics | None = None,
    observe_webhook: Callable[[str, str], None] | None = None,
    observe_deferred: Callable[[], None] = lambda: None,
    observe_purge: ObservePurge | None = None,
) -> AsyncIterator[Services]:
    """Every service over one set of clients. ``observe_webhook`` is told each webhook
    outcome (the API's ``metrics`` by default; a worker passes its own),
    ``observe_deferred`` each reprocess job a worker put back, and ``observe_purge`` each CDN
    purge's outcome."""
    if observe_webhook is None and metrics is not None:
        observe_webhook = metrics.observe_webhook
    if observe_purge is None:
        observe_purge = metrics.observe_purge if metrics is not None else lambda _outcome: None
    observe = observe_webhook or (lambda _event, _outcome: None)
    async with aws_clients(settings) as clients, AsyncExitStack() as stack:
        if metrics is not None:
            clients.table.observe(metrics.observe_dynamodb_call)
        store = await object_store(clients, settings, clock=clock)
        repository = ImageRepository(
            clients.table, settings.table, dead_record_ttl=settings.dead_record_ttl_seconds
        )
        jobs = JobQueue(clients.sqs, settings.queue_name, long_poll_client=clients.sqs_long_poll)
        # The keys callbacks are signed with: the events hand owners theirs, the sender signs.
        masters = callback_masters(settings)
        events = image_events(
            settings,
            jobs,
            outbox=repository,
            masters=masters,
            clock=clock,
            observe=observe,
            purge_cdn=settings.cdn != "none",
        )

        watcher = StatusWatcher(
            read_many=repository.get_many,
            read_feed=repository.feed_since,
            origin=events.origin,
            max_waits=settings.max_held_waits,
            max_waits_per_user=settings.max_held_waits_per_user,
            clock=clock,
        )
        events.listen(lambda event_type, record: watcher.changed(record, event_type))
        fetcher = UrlFetcher(
            allow_private=settings.import_allow_private,
            deadline_seconds=settings.import_timeout_seconds,
        )
        stack.push_async_callback(fetcher.close)
        images = image_lifecycle(
            store=store,
            repository=repository,
            listing=repository,
            idempotency=IdempotencyStore(clients.table, settings.table),
            jobs=jobs,
            events=events,
            settings=settings,
            clock=clock,
            watcher=watcher,
            fetcher=fetcher,
        )
        scanners: list[Scanner] = []
        if settings.clamd_address:
            scanners.append(ClamdScanner(settings.clamd_address))
        if settings.moderation_webhook_url:
            http = await stack.enter_async_context(aiohttp.ClientSession())
            scanners.append(WebhookScanner(settings.moderation_webhook_url, http))
        webhooks = None
        if settings.webhook_secret is not None:
            webhooks = WebhookSender(
                jobs=jobs,
                dead_letters=JobQueue(
                    clients.sqs,
                    dead_letter_queue_name(settings.queue_name),
                    long_poll_client=clients.sqs_long_poll,
                ),
                operator_secrets=tuple(
                    s for s in (settings.webhook_secret, settings.webhook_previous_secret) if s
                ),
                callback_masters=masters,
                operator_url=settings.webhook_url,
                callbacks_shared_signature=settings.callback_shared_signature,
                max_age_seconds=settings.webhook_max_age_seconds,
                # The operator's endpoint and, when allowed, private callbacks: anywhere but
                # link-local (the instance metadata service), checked at connect time.
                http=await stack.enter_async_context(
                    aiohttp.ClientSession(
                        connector=aiohttp.TCPConnector(
                            resolver=PublicOnlyResolver(privately_reachable)
                        )
                    )
                ),
                public_http=await stack.enter_async_context(
                    aiohttp.ClientSession(
                        connector=aiohttp.TCPConnector(resolver=PublicOnlyResolver())
                    )
                ),
                observe=observe,
            )
        processing = processing_policy(settings)
        presence = Presence(repository, fingerprint=processing.fingerprint, clock=clock)
        batch = BatchOps(
            library=images.library,
            trash=images.trash,
            listing=repository,
            store=repository,
            jobs=jobs,
            outbox=repository,
            clock=clock,
        )
        processor = ImageProcessor(
            completion=images.completion,
            imports=images.imports,
            store=store,
            repository=repository,
            scanners=scanners,
            policy=processing,
            render_slots=settings.inspection_concurrency,
            webhooks=webhooks,
            jobs=jobs,
            presence=presence,
            observe_deferred=observe_deferred,
            purger=CloudFrontPurger(
                clients.cloudfront, settings.cdn_distribution_id, jobs=jobs, observe=observe_purge
            ),
            batch=batch,
            clock=clock,
        )
        rendering = rendition_policy(settings, settings)
        renderer = ThreadRenderer(rendering.max_renders)
        stack.callback(renderer.close)
        renditions = Renditions(
            policy=rendering,
            signer=RenditionSigner(rendering.keys, rendering.url_window, clock),
            get_record=repository.get,
            read_object=store.get_if_exists,
            write_object=lambda key, data, content_type: store.put_bytes(
                key, data, content_type=content_type
            ),
            delete_objects=store.delete,
            render=renderer,
            limiter=TokenBucketLimiter(
                per_minute=settings.render_rate_per_minute,
                burst=settings.render_burst,
                limited="new renditions",
            ),
            observe=metrics.observe_render if metrics is not None else lambda *_: None,
        )
        api_keys = ApiKeys(repository, cache_seconds=settings.api_key_cache_seconds, clock=clock)
        cursors = CursorCodec(*cursor_keys(settings))
        albums = Albums(repository, repository, cursors=cursors, clock=clock)

        async def viewed(share: Share) -> None:
            await share_viewed(
                events, share_id=share.share_id, owner=share.owner, views=share.views or None
            )

        shares = Shares(
            repository,
            repository,
            SharedTargets(albums, repository, cursors),
            presets=tuple(rendering.presets),
            clock=clock,
            on_view=viewed if settings.webhook_share_viewed else None,
        )
        share_urls = ShareUrls(rendering.keys, rendering.url_window, clock)
        yield Services(
            store,
            repository,
            jobs,
            images,
            processor,
            renditions,
            watcher,
            clients,
            presence,
            api_keys,
            albums,
            shares,
            share_urls,
            batch,
        )
