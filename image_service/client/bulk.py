"""The calls that act on many images, or on images from elsewhere: import by URL and bulk
operations with their jobs (``ImageServiceClient`` has them all; this is their room)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

from image_service.client.types import BatchResult, Image, Job, ProcessingTimeout

JOB_POLL_SECONDS = 1.0


class BulkCalls:
    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        """The API's JSON answer to one call (``ImageServiceClient._json``)."""
        raise NotImplementedError

    async def wait_until_processed(self, image_id: str, *, max_wait: float) -> Image:
        """The image once processed (``ImageServiceClient.wait_until_processed``)."""
        raise NotImplementedError

    async def import_url(
        self,
        url: str,
        *,
        tags: Iterable[str] = (),
        description: str = "",
        filename: str | None = None,
        idempotency_key: str | None = None,
        wait: bool = False,
        max_wait: float = 120,
    ) -> Image:
        """``POST /images/import``: the service fetches ``url`` itself; the image answered
        is ``fetching`` (with ``wait``: once ready or rejected, its ``reason`` saying why)."""
        body: dict[str, Any] = {"url": url, "tags": list(tags), "description": description}
        if filename is not None:
            body["filename"] = filename
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        image = Image.from_json(
            await self._json("POST", "/images/import", json=body, headers=headers)
        )
        if wait:
            return await self.wait_until_processed(image.image_id, max_wait=max_wait)
        return image

    async def batch(
        self,
        op: str,
        *,
        image_ids: Iterable[str] | None = None,
        tag: str | None = None,
        tags: Iterable[str] = (),
        focal: tuple[float, float] | None = None,
        permanent: bool = False,
        idempotency_key: str | None = None,
    ) -> BatchResult:
        """``POST /images/batch``: ``op`` (tag, untag, delete, restore, set_focal) on the
        images named, or on every image with ``tag``. Up to 100 ids answer each image's
        result; more, or a tag, answer a job (:meth:`wait_for_job`)."""
        body: dict[str, Any] = {"op": op}
        if image_ids is not None:
            body["image_ids"] = list(image_ids)
        if tag is not None:
            body["tag"] = tag
        if op in {"tag", "untag"}:
            body["tags"] = list(tags)
        if op == "set_focal":
            body["focal"] = None if focal is None else {"x": focal[0], "y": focal[1]}
        if permanent:
            body["permanent"] = True
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        answer = await self._json("POST", "/images/batch", json=body, headers=headers)
        if "job_id" in answer:
            return BatchResult(job=Job.from_json(answer))
        return BatchResult(results=tuple((r["image_id"], r["result"]) for r in answer["results"]))

    async def job(self, job_id: str) -> Job:
        """``GET /jobs/{id}``: a bulk job's progress."""
        return Job.from_json(await self._json("GET", f"/jobs/{job_id}"))

    async def wait_for_job(
        self,
        job_id: str,
        *,
        max_wait: float = 600,
        progress: Callable[[Job], None] | None = None,
    ) -> Job:
        """The job once done, polling every second (``progress`` hears each state)."""
        deadline = time.monotonic() + max_wait
        while True:
            job = await self.job(job_id)
            if progress is not None:
                progress(job)
            if job.done:
                return job
            if time.monotonic() >= deadline:
                raise ProcessingTimeout(f"job {job_id} still {job.state} after {max_wait} s")
            await asyncio.sleep(JOB_POLL_SECONDS)
