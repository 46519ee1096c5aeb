"""The worker as a Lambda function (image_service/programs/lambda_handler.py): a real batch of SQS
messages, received from the job queue on moto and shaped as Lambda's SQS event, one of them
poisoned. Only the poisoned message is reported as failed; the others' images are ready."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from image_service.programs import lambda_handler
from image_service.programs.lambda_handler import LambdaWorker
from image_service.storage.dynamo.codec import kept_job_item
from tests import images
from tests.integration.conftest import REGION, Api, MakeApi, emulator_client

EVENT_SOURCE_ARN = "arn:aws:sqs:us-east-1:123456789012:jobs"


def lambda_event(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Lambda's SQS event for messages received with all their attributes."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message["Attributes"],
                "messageAttributes": {},
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": EVENT_SOURCE_ARN,
                "awsRegion": REGION,
            }
            for message in messages
        ]
    }


async def _completed_uploads(api: Api, count: int) -> list[str]:
    """Uploads completed through the API: their jobs wait on the queue (no worker runs)."""
    image_ids = []
    for _ in range(count):
        upload = await api.upload_url(content_type="image/jpeg")
        assert await api.send_to_s3(upload, images.jpeg(64, 48)) == 200
        status, body, _ = await api.call("POST", f"/images/{upload['image_id']}/complete")
        assert status == 200, body
        image_ids.append(upload["image_id"])
    return image_ids


def _receive_all(sqs: Any, queue_url: str, expected: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    while len(messages) < expected:
        answer = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            AttributeNames=["All"],
            VisibilityTimeout=30,
            WaitTimeSeconds=1,
        )
        messages += answer.get("Messages", [])
    return messages


@pytest.fixture
async def api(make_api: MakeApi) -> Api:
    return await make_api(embedded_worker=False)


async def test_a_batch_reports_only_its_poisoned_message(api: Api, moto_endpoint: str) -> None:
    image_ids = await _completed_uploads(api, 2)
    sqs = emulator_client("sqs", moto_endpoint)
    queue_url = sqs.get_queue_url(QueueName=api.settings.queue_name)["QueueUrl"]
    poisoned = sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"type": "unknown"}))
    messages = _receive_all(sqs, queue_url, 3)

    worker = LambdaWorker(api.settings)
    try:
        answer = await asyncio.to_thread(worker, lambda_event(messages), None)
    finally:
        await asyncio.to_thread(worker.close)

    assert answer == {"batchItemFailures": [{"itemIdentifier": poisoned["MessageId"]}]}
    for image_id in image_ids:
        status, image, _ = await api.call("GET", f"/images/{image_id}")
        assert (status, image["status"]) == (200, "ready")
        assert {variant["name"] for variant in image["variants"]} == {"thumb", "medium"}
    # The failed message waits its backoff (2 s after one receive), then is back for a retry.
    async with asyncio.timeout(10):
        while True:
            again = sqs.receive_message(QueueUrl=queue_url, AttributeNames=["All"])
            if again.get("Messages"):
                break
            await asyncio.sleep(0.2)
    assert [message["MessageId"] for message in again["Messages"]] == [poisoned["MessageId"]]


async def test_the_entry_point_reads_its_settings_from_the_environment(
    api: Api, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (image_id,) = await _completed_uploads(api, 1)
    settings = api.settings
    for name, value in {
        "IMAGE_SERVICE_JWT_SECRET": settings.jwt_secret,
        "IMAGE_SERVICE_BUCKET": settings.bucket,
        "IMAGE_SERVICE_TABLE": settings.table,
        "IMAGE_SERVICE_QUEUE_NAME": settings.queue_name,
    }.items():
        monkeypatch.setenv(name, value)
    sqs = emulator_client("sqs", os.environ.get("AWS_ENDPOINT_URL_SQS", moto_endpoint))
    queue_url = sqs.get_queue_url(QueueName=settings.queue_name)["QueueUrl"]
    event = lambda_event(_receive_all(sqs, queue_url, 1))

    monkeypatch.setattr(lambda_handler, "_worker", None)
    try:
        answer = await asyncio.to_thread(lambda_handler.handler, event, None)
        assert answer == {"batchItemFailures": []}
        # A warm container's next invocation reuses the worker and its clients.
        worker = lambda_handler._worker
        assert worker is not None
        assert await asyncio.to_thread(lambda_handler.handler, {"Records": []}, None) == {
            "batchItemFailures": []
        }
        assert lambda_handler._worker is worker
    finally:
        if lambda_handler._worker is not None:
            await asyncio.to_thread(lambda_handler._worker.close)
    status, image, _ = await api.call("GET", f"/images/{image_id}")
    assert (status, image["status"]) == (200, "ready")


async def test_the_schedule_sweeps_and_relays_the_outbox(
    make_api: MakeApi, moto_endpoint: str
) -> None:
    # A deployment whose workers are Lambda's: nothing runs in the API's process.
    api = await make_api(embedded_worker=False)
    job = {"type": "webhook", "id": "msg_left", "url": "https://hooks.example.com/in"}
    owed_at = datetime.now(UTC) - timedelta(minutes=1)  # its process died a minute ago
    dynamodb = emulator_client("dynamodb", moto_endpoint)
    dynamodb.put_item(
        TableName=api.settings.table,
        Item=kept_job_item("alice", "left.operator", json.dumps(job), kept_at=owed_at),
    )
    worker = LambdaWorker(api.settings)
    scheduled = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
    try:
        answer = await asyncio.to_thread(worker, scheduled)
        assert answer == {"requeued": 0, "deleted": 0, "purged": 0, "relayed": 1}
        assert await asyncio.to_thread(worker, scheduled) == {**answer, "relayed": 0}
    finally:
        await asyncio.to_thread(worker.close)
    sqs = emulator_client("sqs", os.environ.get("AWS_ENDPOINT_URL_SQS", moto_endpoint))
    queue_url = sqs.get_queue_url(QueueName=api.settings.queue_name)["QueueUrl"]
    (message,) = _receive_all(sqs, queue_url, 1)
    assert json.loads(message["Body"]) == job
