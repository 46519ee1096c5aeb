"""The one app factory, used by the program and the tests alike. It does no I/O itself: the
backends open in its cleanup context, for the app's whole life."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from aiohttp import web

from image_service.domain.periodic import every
from image_service.domain.ports import utc_now
from image_service.domain.shares import VIEW_FLUSH_SECONDS
from image_service.programs.services import open_services
from image_service.programs.worker import running
from image_service.settings import Settings
from image_service.web.app import api_shell
from image_service.web.keys import (
    ALBUMS,
    API_KEYS,
    AWS_CLIENTS,
    BATCH,
    COMPLETION,
    IMAGE_REPOSITORY,
    IMPORTS,
    JOB_QUEUE,
    LIBRARY,
    METRICS,
    OBJECT_STORE,
    RENDITIONS,
    SETTINGS,
    SHARE_URLS,
    SHARES,
    TRASH,
    UPLOADS,
    WATCHER,
)

log = logging.getLogger(__name__)

# How often the API keys' last uses are looked at (each key's is written once a minute at most).
KEY_USES_SECONDS = 10


def create_app(
    settings: Settings, *, clock: Callable[[], datetime] = utc_now, dev_tokens: bool = False
) -> web.Application:
    """``dev_tokens``: serve ``POST /dev/token`` for the browser page; `image-service dev` only."""
    return api_shell(settings, backends=_backends(clock), dev_tokens=dev_tokens)


def _backends(clock: Callable[[], datetime]) -> Callable[[web.Application], AsyncIterator[None]]:
    async def backends(app: web.Application) -> AsyncIterator[None]:
        """One aioboto3 session and one client per AWS service for the app's whole life; and,
        when asked (dev, tests), a queue worker in this process."""
        settings = app[SETTINGS]
        async with open_services(settings, clock=clock, metrics=app[METRICS]) as services:
            app[OBJECT_STORE] = services.store
            app[IMAGE_REPOSITORY] = services.repository
            app[JOB_QUEUE] = services.jobs
            app[UPLOADS] = services.images.uploads
            app[COMPLETION] = services.images.completion
            app[LIBRARY] = services.images.library
            app[TRASH] = services.images.trash
            app[IMPORTS] = services.images.imports
            app[RENDITIONS] = services.renditions
            app[WATCHER] = services.watcher
            app[AWS_CLIENTS] = services.clients
            app[API_KEYS] = services.api_keys
            app[ALBUMS] = services.albums
            app[BATCH] = services.batch
            app[SHARES] = services.shares
            app[SHARE_URLS] = services.share_urls
            background = [
                asyncio.create_task(services.watcher.run()),
                # Each key's last use is written once a minute at most (domain/apikeys.py).
                asyncio.create_task(
                    every(KEY_USES_SECONDS, services.api_keys.write_uses, "writing API key uses")
                ),
                asyncio.create_task(
                    every(VIEW_FLUSH_SECONDS, services.shares.write_views, "writing share views")
                ),
            ]
            try:
                if not settings.embedded_worker:
                    yield
                    return
                async with running(settings, services):
                    yield
            finally:
                for task in background:
                    task.cancel()
                for task in background:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                with contextlib.suppress(Exception):  # the last uses, on the way out
                    await services.api_keys.write_uses(at_exit=True)
                with contextlib.suppress(Exception):
                    await services.shares.write_views()

    return backends
