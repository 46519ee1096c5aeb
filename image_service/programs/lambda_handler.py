"""The worker as an AWS Lambda function, triggered by the job queue (SQS).

The same pipeline as `image-service worker` (``ImageProcessor.handle``), one invocation per batch
of up to ten messages, run concurrently (at most ``IMAGE_SERVICE_WORKER_CONCURRENCY`` at once).
It reports a partial batch failure: the answer names only the messages whose job failed, so
Lambda deletes the others and only the failed ones go back to the queue. Each failed one is
hidden for the same backoff as the long-running worker gives it (2, 4, 8... s by receive), and
after ``IMAGE_SERVICE_JOB_MAX_RECEIVES`` receives the queue's redrive policy dead-letters it.

The event source mapping needs ``FunctionResponseTypes: [ReportBatchItemFailures]``
(deploy/lambda/template.yaml has it). The AWS clients and the event loop are opened on the first
invocation and kept for the warm container's later ones.

A Lambda worker has no loop of its own to sweep and relay in, so an EventBridge schedule invokes
the same function every minute (a ``Scheduled Event``): it sweeps, and relays the outbox, as
``image-service sweep`` does. The outbox's jobs the fast path missed are therefore queued within
a minute on Lambda, against 7 s with long-running workers.

    Handler: image_service.programs.lambda_handler.handler
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

from image_service import tracing
from image_service.logs import configure_logging
from image_service.programs.services import Services, open_services
from image_service.programs.worker import make_relay, make_sweeper
from image_service.settings import Settings
from image_service.storage.queue import QueueMessage
from image_service.worker.loop import retry_later


def message_of(record: dict[str, Any]) -> QueueMessage:
    """A record of Lambda's SQS event as the queue would have handed it to a worker."""
    return QueueMessage(
        message_id=record["messageId"],
        receipt_handle=record["receiptHandle"],
        body=record["body"],
        receive_count=int(record.get("attributes", {}).get("ApproximateReceiveCount", 1)),
        # Lambda spells SQS's message attributes in camel case.
        attributes={
            name: {"StringValue": value.get("stringValue", "")}
            for name, value in record.get("messageAttributes", {}).items()
        },
    )


class LambdaWorker:
    """Runs SQS event batches through the pipeline on one event loop, kept between them."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._loop = asyncio.new_event_loop()
        self._resources = AsyncExitStack()
        self._services: Services | None = None

    def __call__(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        if event.get("detail-type") == "Scheduled Event":
            return self._loop.run_until_complete(self.sweep())
        return self._loop.run_until_complete(self.run_batch(event))

    def close(self) -> None:
        self._loop.run_until_complete(self._resources.aclose())
        self._loop.close()

    async def _opened(self) -> Services:
        if self._services is None:
            self._services = await self._resources.enter_async_context(
                open_services(self._settings)
            )
        return self._services

    async def sweep(self) -> dict[str, Any]:
        """One sweep and one pass of the outbox relay; what each did."""
        services = await self._opened()
        report = await make_sweeper(self._settings, services).sweep()
        relayed = await make_relay(self._settings, services).relay()
        return {
            "requeued": len(report.requeued),
            "deleted": len(report.deleted),
            "purged": len(report.purged),
            "relayed": len(relayed),
        }

    async def run_batch(self, event: dict[str, Any]) -> dict[str, Any]:
        await self._opened()
        assert self._services is not None
        slots = asyncio.Semaphore(self._settings.worker_concurrency)
        records = event.get("Records", [])
        outcomes = await asyncio.gather(
            *(self._run_one(self._services, message_of(record), slots) for record in records)
        )
        failed = [message_id for message_id in outcomes if message_id is not None]
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}

    async def _run_one(
        self, services: Services, message: QueueMessage, slots: asyncio.Semaphore
    ) -> str | None:
        """None when the job is done; else the message's id, to go back to the queue."""
        async with slots:
            try:
                job = message.json()
                with tracing.job_span(str(job.get("type", "process")), message.attributes):
                    await services.processor.handle(job)
            except Exception as exc:
                # Lambda returns it to the queue; this sets when it shows again.
                await retry_later(services.jobs, message, exc)
                return message.message_id
        return None


_worker: LambdaWorker | None = None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda's entry point: settings from the function's environment, as for the worker."""
    global _worker
    if _worker is None:
        settings = Settings.from_env()
        configure_logging(settings.log_level, settings.log_format)
        tracing.start("image-service-worker")
        _worker = LambdaWorker(settings)
    return _worker(event, context)
