"""Work done every so often in the background of a process (a sweep, the outbox relay, the
API keys' last uses, the share links' views): one loop for all of them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from image_service.domain.errors import BackendUnavailable

log = logging.getLogger(__name__)


async def every(seconds: float, work: Callable[[], Awaitable[object]], what: str) -> None:
    """Runs ``work`` every ``seconds`` until cancelled. An outage skips a round (the next one
    finds what it left); anything else is logged whole, and the loop goes on."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await work()
        except BackendUnavailable as exc:
            log.warning("%s skipped: %s unavailable (%s)", what, exc.backend, exc.reason)
        except Exception:
            log.exception("%s failed", what)
