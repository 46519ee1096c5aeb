"""Creating the bucket and table the service needs. Idempotent: safe to run on every deploy."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from image_service.storage.dynamo import EXPIRY_ATTRIBUTE, UPLOAD_TIME_INDEX
from image_service.storage.errors import error_code

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_sqs import SQSClient

log = logging.getLogger(__name__)

ABANDONED_UPLOAD_DAYS = 1
# Browsers read the ETag after a PUT and need these request headers allowed to send a signed one.
_CORS_EXPOSE_HEADERS = ["ETag"]


async def ensure_bucket(
    s3: S3Client, bucket: str, *, region: str, cors_origins: Sequence[str]
) -> None:
    try:
        if region == "us-east-1":
            await s3.create_bucket(Bucket=bucket)
        else:
            await s3.create_bucket(
                Bucket=bucket,
                CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]  # any region name is valid here
            )
        log.info("created bucket %s", bucket)
    except ClientError as exc:
        if error_code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
            raise
    await s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    await s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                {
                    # Uploads that were never completed (or whose completion failed) go away.
                    "ID": "expire-abandoned-uploads",
                    "Filter": {"Prefix": "incoming/"},
                    "Status": "Enabled",
                    "Expiration": {"Days": ABANDONED_UPLOAD_DAYS},
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                }
            ]
        },
    )
    await s3.put_bucket_cors(
        Bucket=bucket,
        CORSConfiguration={
            "CORSRules": [
                {
                    "AllowedOrigins": list(cors_origins),
                    "AllowedMethods": ["PUT", "POST", "GET", "HEAD"],
                    "AllowedHeaders": ["*"],
                    "ExposeHeaders": _CORS_EXPOSE_HEADERS,
                    "MaxAgeSeconds": 3600,
                }
            ]
        },
    )


async def ensure_table(dynamodb: DynamoDBClient, table: str) -> None:
    definition: dict[str, Any] = {
        "TableName": table,
        "AttributeDefinitions": [
            {"AttributeName": "user_id", "AttributeType": "S"},
            {"AttributeName": "image_id", "AttributeType": "S"},
            {"AttributeName": "upload_sort", "AttributeType": "S"},
        ],
        "KeySchema": [
            {"AttributeName": "user_id", "KeyType": "HASH"},
            {"AttributeName": "image_id", "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": UPLOAD_TIME_INDEX,
                "KeySchema": [
                    {"AttributeName": "user_id", "KeyType": "HASH"},
                    {"AttributeName": "upload_sort", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }
    try:
        await dynamodb.create_table(**definition)
        log.info("created table %s", table)
    except ClientError as exc:
        if error_code(exc) != "ResourceInUseException":
            raise
        await _ensure_index(dynamodb, table, definition)
    waiter = dynamodb.get_waiter("table_exists")
    await waiter.wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    ttl = await dynamodb.describe_time_to_live(TableName=table)
    if ttl["TimeToLiveDescription"].get("TimeToLiveStatus") not in {"ENABLED", "ENABLING"}:
        await dynamodb.update_time_to_live(
            TableName=table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": EXPIRY_ATTRIBUTE},
        )


async def _ensure_index(dynamodb: DynamoDBClient, table: str, definition: dict[str, Any]) -> None:
    """Adds the listing index to a table made by the original service, which had none."""
    description = await dynamodb.describe_table(TableName=table)
    existing = {
        index["IndexName"] for index in description["Table"].get("GlobalSecondaryIndexes", [])
    }
    if UPLOAD_TIME_INDEX in existing:
        return
    await dynamodb.update_table(
        TableName=table,
        AttributeDefinitions=definition["AttributeDefinitions"],
        GlobalSecondaryIndexUpdates=[{"Create": definition["GlobalSecondaryIndexes"][0]}],
    )
    log.info("added index %s to table %s", UPLOAD_TIME_INDEX, table)


async def ensure_queue(
    sqs: SQSClient, name: str, *, max_receives: int, visibility_timeout: int
) -> str:
    """The processing queue and its dead-letter queue (after ``max_receives`` failed tries)."""
    dead_letters = await sqs.create_queue(
        QueueName=f"{name}-dlq", Attributes={"MessageRetentionPeriod": str(14 * 24 * 3600)}
    )
    dlq_arn = (
        await sqs.get_queue_attributes(
            QueueUrl=dead_letters["QueueUrl"], AttributeNames=["QueueArn"]
        )
    )["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receives)})
    attributes = {"RedrivePolicy": redrive, "VisibilityTimeout": str(visibility_timeout)}
    try:
        created = await sqs.create_queue(QueueName=name, Attributes=attributes)  # type: ignore[arg-type]  # attribute names are plain strings here
        url = created["QueueUrl"]
    except ClientError as exc:
        if error_code(exc) not in {"QueueAlreadyExists", "QueueNameExists"}:
            raise
        url = (await sqs.get_queue_url(QueueName=name))["QueueUrl"]
        await sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)  # type: ignore[arg-type]  # as above
    log.info("queue %s ready (dead letters after %d receives)", name, max_receives)
    return url


async def ensure_upload_notifications(
    s3: S3Client, sqs: SQSClient, bucket: str, queue: str
) -> None:
    """S3 tells the queue about every object created under incoming/, so an upload whose client
    never calls complete is still verified and processed."""
    arn = (await sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"]))[
        "Attributes"
    ]["QueueArn"]
    # On AWS the queue must let this bucket, and nothing else, send to it.
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": arn,
                "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"}},
            }
        ],
    }
    await sqs.set_queue_attributes(QueueUrl=queue, Attributes={"Policy": json.dumps(policy)})
    try:
        await _put_notification(s3, bucket, arn)
    except ClientError as exc:
        # Emulators without cross-service notifications refuse this; completion still works.
        log.warning("bucket notifications not set up (%s): uploads need complete", error_code(exc))


async def _put_notification(s3: S3Client, bucket: str, arn: str) -> None:
    await s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "incoming/"}]}},
                }
            ]
        },
    )
