"""Sending a purge job (``domain/cdn.py``) to CloudFront, through aioboto3's client.

One job is one image's paths, one ``CreateInvalidation``. Its ``CallerReference`` is the job's
id (the change's), so a job delivered twice, or retried after an answer that was lost, is the
same invalidation to CloudFront, not a second one. botocore retries throttling and 5xx within a
call; a CloudFront too busy for more invalidations gets the job back a minute later; any other
call that fails raises, and the queue delivers the job again (then, after
``IMAGE_SERVICE_JOB_MAX_RECEIVES``, to the dead-letter queue). Every outcome is counted:
``image_service_cdn_purges_total{outcome}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from image_service.domain.ports import Jobs
from image_service.storage.errors import error_code

log = logging.getLogger(__name__)

ObservePurge = Callable[[str], None]
"""Told each purge's outcome: purged, deferred (CloudFront busy), failed (retried by the
queue) or dropped."""

# CloudFront runs at most 15 wildcard invalidations at once per distribution; beyond, it answers
# TooManyInvalidationsInProgress. That is a wait, not a failure: the job goes back on the queue
# this much later, however often, rather than towards the dead-letter queue (a bulk delete of a
# thousand images is a thousand purges).
BUSY_DELAY_SECONDS = 60
_BUSY = "TooManyInvalidationsInProgress"


class CloudFrontPurger:
    """``cloudfront`` None: no CDN is configured (any more), and a purge queued while one was
    is dropped, and counted so."""

    def __init__(
        self,
        cloudfront: Any | None,
        distribution_id: str | None,
        *,
        jobs: Jobs | None = None,  # where a purge CloudFront is too busy for goes back
        observe: ObservePurge = lambda _: None,
    ) -> None:
        self._client = cloudfront  # aioboto3's CloudFront client, or None
        self._distribution_id = distribution_id
        self._jobs = jobs
        self._observe = observe

    async def purge(self, job: dict[str, Any]) -> None:
        paths = [str(path) for path in job["paths"]]
        if self._client is None or not self._distribution_id:
            self._observe("dropped")
            log.warning("cdn purge %s dropped: IMAGE_SERVICE_CDN is none", job.get("id"))
            return
        try:
            answer = await self._client.create_invalidation(
                DistributionId=self._distribution_id,
                InvalidationBatch={
                    "Paths": {"Quantity": len(paths), "Items": paths},
                    "CallerReference": str(job["id"]),
                },
            )
        except ClientError as exc:
            if error_code(exc) == _BUSY and self._jobs is not None:
                await self._jobs.send(job, delay_seconds=BUSY_DELAY_SECONDS)
                self._observe("deferred")
                log.info("cdn purge %s deferred: CloudFront is busy", job["id"])
                return
            self._observe("failed")
            log.warning("cdn purge %s of %s failed, retried: %s", job["id"], paths, exc)
            raise
        except BotoCoreError as exc:
            self._observe("failed")
            log.warning("cdn purge %s of %s failed, retried: %s", job["id"], paths, exc)
            raise
        self._observe("purged")
        log.info(
            "cdn purge %s (%s): invalidation %s of %s",
            job["id"],
            job.get("reason"),
            answer["Invalidation"]["Id"],
            paths,
        )
