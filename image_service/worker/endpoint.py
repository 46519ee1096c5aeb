"""A worker's own HTTP endpoint: ``/metrics`` for Prometheus and ``/health`` for the
orchestrator, on ``IMAGE_SERVICE_WORKER_METRICS_PORT``. A worker serves nothing else; with the
port at 0 (the default) it opens none."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from image_service.metrics import CONTENT_TYPE, WorkerMetrics


def worker_app(metrics: WorkerMetrics) -> web.Application:
    async def render(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/metrics", render)
    app.router.add_get("/health", health)
    return app


@asynccontextmanager
async def worker_endpoint(metrics: WorkerMetrics, host: str, port: int) -> AsyncIterator[None]:
    if not port:
        yield
        return
    runner = web.AppRunner(worker_app(metrics), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        yield
    finally:
        await runner.cleanup()
