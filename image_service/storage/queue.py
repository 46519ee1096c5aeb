"""The processing queue (SQS): jobs from completion and S3 event notifications."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from image_service import tracing
from image_service.storage.errors import backend_errors

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

BACKEND = "sqs"


@dataclass(frozen=True, slots=True)
class QueueMessage:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    # The message's attributes as SQS gives them ({name: {"StringValue": ...}}): the trace
    # context of the request that queued the job, when tracing is on.
    attributes: dict[str, Any] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


class JobQueue:
    """One SQS queue by name; its URL is looked up on first use, so the service starts (and
    reports the queue in /ready) even while SQS or the queue is missing."""

    def __init__(self, client: SQSClient, name: str, *, long_poll_client: SQSClient) -> None:
        self._client = client
        # Receives wait on SQS for up to their long poll: a client whose read timeout is longer.
        self._long_poll_client = long_poll_client
        self.name = name
        self._url: str | None = None

    async def url(self) -> str:
        if self._url is None:
            with backend_errors(BACKEND):
                self._url = (await self._client.get_queue_url(QueueName=self.name))["QueueUrl"]
        return self._url

    async def send(self, job: dict[str, Any], *, delay_seconds: int = 0) -> None:
        """Queues ``job``; with ``delay_seconds`` (at most 900, SQS's limit), hidden that long."""
        url = await self.url()
        traced = tracing.message_attributes()  # the job continues this trace in the worker
        with backend_errors(BACKEND):
            await self._client.send_message(
                QueueUrl=url,
                MessageBody=json.dumps(job, separators=(",", ":")),
                DelaySeconds=delay_seconds,
                **({"MessageAttributes": traced} if traced else {}),  # type: ignore[arg-type]  # plain dicts
            )

    async def receive(
        self, *, max_messages: int, wait_seconds: int, visibility_timeout: int
    ) -> list[QueueMessage]:
        url = await self.url()
        with backend_errors(BACKEND):
            response = await self._long_poll_client.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=max_messages,
                WaitTimeSeconds=wait_seconds,
                VisibilityTimeout=visibility_timeout,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
                MessageAttributeNames=list(tracing.CONTEXT_ATTRIBUTES),
            )
        return [
            QueueMessage(
                message_id=message["MessageId"],
                receipt_handle=message["ReceiptHandle"],
                body=message["Body"],
                receive_count=int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
                attributes=dict(message.get("MessageAttributes", {})),
            )
            for message in response.get("Messages", [])
        ]

    async def delete(self, message: QueueMessage) -> None:
        url = await self.url()
        with backend_errors(BACKEND):
            await self._client.delete_message(QueueUrl=url, ReceiptHandle=message.receipt_handle)

    async def hide(self, message: QueueMessage, seconds: int) -> None:
        """Keeps a message invisible for ``seconds`` more: extends a long job, or delays a retry."""
        url = await self.url()
        with backend_errors(BACKEND):
            await self._client.change_message_visibility(
                QueueUrl=url, ReceiptHandle=message.receipt_handle, VisibilityTimeout=seconds
            )

    async def waiting(self) -> int:
        """About how many jobs wait to be received (SQS's approximate count): what a job sent
        now would queue behind."""
        url = await self.url()
        with backend_errors(BACKEND):
            response = await self._client.get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
            )
        return int(response["Attributes"]["ApproximateNumberOfMessages"])

    async def ping(self) -> None:
        url = await self.url()
        with backend_errors(BACKEND):
            await self._client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
