"""Which processing settings the live workers run, so that a reprocess never silently skips.

A reprocess job asks for an image to be brought up to a settings fingerprint. A worker still on
older settings would find the image already processed as *it* processes, and do nothing; the
image would stay behind, with no error. So:

- every worker says, every ``BEAT_SECONDS``, which fingerprint it runs (a heartbeat item);
- ``image-service reprocess`` refuses to queue anything while a live worker (one heard from in
  the last ``LIVE_SECONDS``) runs other settings than the command's, and names them;
- a worker handed a reprocess job for settings a live worker runs and it does not puts the job
  back on the queue ``DEFER_SECONDS`` later, and counts it, instead of dropping it. A job for
  settings no live worker runs (rolled back, or replaced since) is done as this worker's: the
  settings the deployment now runs.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta

from image_service.domain.ports import Clock, WorkerBeat, WorkerRegistry

log = logging.getLogger(__name__)

BEAT_SECONDS = 15
LIVE_SECONDS = 60
DEFER_SECONDS = 30


class Presence:
    """This worker's heartbeat, and what the live workers run (read at most once a beat)."""

    def __init__(self, registry: WorkerRegistry, *, fingerprint: str, clock: Clock) -> None:
        self._registry = registry
        self.fingerprint = fingerprint
        self._clock = clock
        self.worker_id = uuid.uuid4().hex[:16]
        self._live: frozenset[str] | None = None
        self._live_read_at = 0.0

    async def run(self) -> None:
        """Beats now and every ``BEAT_SECONDS`` until cancelled; then says it has stopped."""
        try:
            while True:
                try:
                    await self._registry.beat(self.worker_id, self.fingerprint, at=self._clock())
                except Exception as exc:  # an outage: the next beat tries again
                    log.warning("worker heartbeat failed: %s: %s", type(exc).__name__, exc)
                await asyncio.sleep(BEAT_SECONDS)
        finally:
            try:
                await asyncio.shield(self._registry.forget_worker(self.worker_id))
            except Exception as exc:  # it expires as a laggard would: LIVE_SECONDS from now
                log.warning("worker heartbeat not removed: %s: %s", type(exc).__name__, exc)

    async def live_fingerprints(self) -> frozenset[str]:
        """The fingerprints the live workers run (this one's included)."""
        now = asyncio.get_running_loop().time()
        if self._live is None or now - self._live_read_at >= BEAT_SECONDS:
            beats = await live_workers(self._registry, self._clock)
            self._live = frozenset({self.fingerprint, *(beat.fingerprint for beat in beats)})
            self._live_read_at = now
        return self._live


async def live_workers(registry: WorkerRegistry, clock: Clock) -> list[WorkerBeat]:
    return await registry.workers_seen_since(clock() - timedelta(seconds=LIVE_SECONDS))


async def laggards(registry: WorkerRegistry, fingerprint: str, clock: Clock) -> list[WorkerBeat]:
    """The live workers that run other settings than ``fingerprint``."""
    return [beat for beat in await live_workers(registry, clock) if beat.fingerprint != fingerprint]
