"""The worker process (`image-service worker`): the queue worker, its sweeper, and its own
/metrics; and `image-service sweep`, one sweep (and outbox relay) now."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from image_service.domain.ports import utc_now
from image_service.metrics import WorkerMetrics
from image_service.programs.services import Services, open_services
from image_service.settings import Settings
from image_service.worker.endpoint import worker_endpoint
from image_service.worker.loop import Worker
from image_service.worker.relay import OutboxRelay
from image_service.worker.sweeper import Sweeper, SweepReport

log = logging.getLogger(__name__)


def make_worker(
    settings: Settings, services: Services, *, metrics: WorkerMetrics | None = None
) -> Worker:
    return Worker(
        services.jobs,
        services.processor,
        concurrency=settings.worker_concurrency,
        visibility_seconds=settings.job_visibility_seconds,
        wait_seconds=settings.queue_wait_seconds,
        metrics=metrics,
    )


def make_sweeper(
    settings: Settings,
    services: Services,
    *,
    clock: Callable[[], datetime] = utc_now,
    metrics: WorkerMetrics | None = None,
) -> Sweeper:
    return Sweeper(
        repository=services.repository,
        jobs=services.jobs,
        trash=services.images.trash,
        stuck_after=timedelta(seconds=settings.stuck_after_seconds),
        trash_for=timedelta(days=settings.trash_days) if settings.trash_days else None,
        clock=clock,
        metrics=metrics,
    )


def make_relay(
    settings: Settings,
    services: Services,
    *,
    clock: Callable[[], datetime] = utc_now,
    metrics: WorkerMetrics | None = None,
) -> OutboxRelay:
    return OutboxRelay(
        outbox=services.repository,
        jobs=services.jobs,
        grace=timedelta(seconds=settings.outbox_grace_seconds),
        clock=clock,
        relayed=(lambda _job: metrics.relayed.inc()) if metrics is not None else lambda _job: None,
    )


@asynccontextmanager
async def running(
    settings: Settings, services: Services, *, metrics: WorkerMetrics | None = None
) -> AsyncIterator[None]:
    """Runs a worker in the background, with its outbox relay and its heartbeat; on exit
    stops polling and lets the jobs in flight finish, for at most the shutdown grace."""
    worker = make_worker(settings, services, metrics=metrics)
    relay = make_relay(settings, services, metrics=metrics)
    tasks = [
        asyncio.create_task(worker.run()),
        # A relay cut short is safe: it drops a job only once the job is sent.
        asyncio.create_task(relay.run(settings.outbox_relay_seconds)),
        asyncio.create_task(services.presence.run()),
    ]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await worker.drain(settings.shutdown_grace_seconds)


async def run_worker(settings: Settings) -> None:
    """Polls until SIGTERM or SIGINT (a deploy, a scale-in), sweeping every so often; then
    lets the jobs in flight finish within the grace period."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    metrics = WorkerMetrics()
    async with (
        worker_endpoint(metrics, settings.host, settings.worker_metrics_port),
        open_services(
            settings,
            observe_webhook=metrics.observe_webhook,
            observe_deferred=metrics.deferred.inc,
            observe_purge=metrics.observe_purge,
        ) as services,
        running(settings, services, metrics=metrics),
    ):
        sweeper = make_sweeper(settings, services, metrics=metrics)
        sweeping = asyncio.create_task(sweeper.run(settings.sweep_interval_seconds))
        log.info("worker polling %s", settings.queue_name)
        await stop.wait()
        sweeping.cancel()  # a sweep cut short is safe: each image it acts on is claimed first
        with contextlib.suppress(asyncio.CancelledError):
            await sweeping
    log.info("worker stopped")


async def sweep_once(settings: Settings) -> SweepReport:
    async with open_services(settings) as services:
        report = await make_sweeper(settings, services).sweep()
        report.relayed = await make_relay(settings, services).relay()
        return report
