"""The purger's answers to what CloudFront says that moto's CloudFront never does: too many
invalidations in progress (a wait, not a failure), and a refusal (retried by the queue).
moto's CloudFront itself is in tests/integration/test_cdn.py."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from image_service.domain.cdn import purge_job
from image_service.storage.cdn import BUSY_DELAY_SECONDS, CloudFrontPurger
from tests.fakes import FakeJobs


class CloudFront:
    """Answers create_invalidation with ``error`` (a CloudFront error code) or an id."""

    def __init__(self, error: str | None = None) -> None:
        self.error = error
        self.batches: list[dict[str, Any]] = []

    async def create_invalidation(self, **call: Any) -> dict[str, Any]:
        self.batches.append(call)
        if self.error is not None:
            raise ClientError({"Error": {"Code": self.error, "Message": "x"}}, "CreateInvalidation")
        return {"Invalidation": {"Id": "I1"}}


async def test_a_busy_cloudfront_gets_the_job_back_a_minute_later() -> None:
    jobs, outcomes = FakeJobs(), []
    cloudfront = CloudFront("TooManyInvalidationsInProgress")
    purger = CloudFrontPurger(cloudfront, "E1", jobs=jobs, observe=outcomes.append)
    job = purge_job("purge_1", "alice", "img", "image.trashed")
    await purger.purge(job)  # not raised: the job is not spent towards the dead-letter queue
    assert (jobs.sent, jobs.delays, outcomes) == ([job], [BUSY_DELAY_SECONDS], ["deferred"])
    assert cloudfront.batches[0]["InvalidationBatch"]["CallerReference"] == "purge_1"


async def test_a_refusal_is_raised_for_the_queue_to_retry() -> None:
    jobs, outcomes = FakeJobs(), []
    purger = CloudFrontPurger(CloudFront("AccessDenied"), "E1", jobs=jobs, observe=outcomes.append)
    with pytest.raises(ClientError):
        await purger.purge(purge_job("purge_2", "alice", "img", "image.deleted"))
    assert (jobs.sent, outcomes) == ([], ["failed"])


async def test_without_a_cdn_a_queued_purge_is_dropped() -> None:
    outcomes: list[str] = []
    await CloudFrontPurger(None, None, observe=outcomes.append).purge(
        purge_job("purge_3", "alice", "img", "image.deleted")
    )
    assert outcomes == ["dropped"]
