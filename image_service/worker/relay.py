"""The outbox relay: sends the jobs changes owed that nobody sent.

A change that owes webhook deliveries writes them into the outbox in its own transaction
(``domain/events.py``), and whoever made it sends them at once and takes them out. What is
still there after ``IMAGE_SERVICE_OUTBOX_GRACE_SECONDS`` was not sent: the process died
between the commit and the send, or SQS refused it. Every worker runs this relay every
``IMAGE_SERVICE_OUTBOX_RELAY_SECONDS``; so a job the fast path missed is queued within
grace + interval (7 s by default) of its change, plus the attention index's lag (DynamoDB's
global indexes are eventually consistent, usually well under a second).

Sent, then dropped: a relay stopped between the two, or two relays (or the fast path and a
relay) on one job, send it twice, with the same ``webhook-id``, which receivers de-duplicate.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from image_service.domain.periodic import every
from image_service.domain.ports import Jobs, OwedJob

log = logging.getLogger(__name__)


class OwedJobs(Protocol):
    def owed_jobs(self, before: datetime) -> AsyncIterator[OwedJob]: ...

    async def drop_jobs(self, jobs: Sequence[OwedJob]) -> None: ...


class OutboxRelay:
    def __init__(
        self,
        *,
        outbox: OwedJobs,
        jobs: Jobs,
        grace: timedelta,
        clock: Callable[[], datetime],
        relayed: Callable[[dict[str, Any]], None] = lambda _job: None,
    ) -> None:
        self._outbox = outbox
        self._jobs = jobs
        self._grace = grace
        self._clock = clock
        self._relayed = relayed

    async def relay(self) -> list[dict[str, Any]]:
        """Queues every job owed for longer than the grace; the jobs queued."""
        sent: list[dict[str, Any]] = []
        async for owed in self._outbox.owed_jobs(self._clock() - self._grace):
            await self._jobs.send(owed.job)
            await self._outbox.drop_jobs([owed])
            sent.append(owed.job)
            self._relayed(owed.job)
            log.info("owed %s job relayed: %s", owed.job.get("type"), owed.job.get("id"))
        return sent

    async def run(self, interval_seconds: float) -> None:
        """Relays every ``interval_seconds`` until cancelled; an outage skips a round."""
        await every(interval_seconds, self.relay, "outbox relay")
