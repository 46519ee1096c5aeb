"""Creating the bucket and table the service needs. Idempotent: safe to run on every deploy."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from image_service.storage.dynamo import EXPIRY_ATTRIBUTE, INDEXES
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


def _index_definitions() -> list[dict[str, Any]]:
    return [
        {
            "IndexName": name,
            "KeySchema": [
                {"AttributeName": partition, "KeyType": "HASH"},
                {"AttributeName": sort, "KeyType": "RANGE"},
            ],
            # Pages are served from the index alone: no second read per listed image.
            "Projection": {"ProjectionType": "ALL"},
        }
        for name, partition, sort in INDEXES
    ]


def _attribute_definitions() -> list[dict[str, str]]:
    names = ["user_id", "image_id"] + [key for _, *keys in INDEXES for key in keys]
    return [{"AttributeName": name, "AttributeType": "S"} for name in dict.fromkeys(names)]


async def ensure_table(dynamodb: DynamoDBClient, table: str) -> None:
    try:
        await dynamodb.create_table(
            TableName=table,
            AttributeDefinitions=_attribute_definitions(),  # type: ignore[arg-type]  # plain dicts
            KeySchema=[
                {"AttributeName": "user_id", "KeyType": "HASH"},
                {"AttributeName": "image_id", "KeyType": "RANGE"},
            ],
            GlobalSecondaryIndexes=_index_definitions(),  # type: ignore[arg-type]  # plain dicts
            BillingMode="PAY_PER_REQUEST",
        )
        log.info("created table %s", table)
    except ClientError as exc:
        if error_code(exc) != "ResourceInUseException":
            raise
        await _ensure_indexes(dynamodb, table)
    await _table_active(dynamodb, table)
    ttl = await dynamodb.describe_time_to_live(TableName=table)
    if ttl["TimeToLiveDescription"].get("TimeToLiveStatus") not in {"ENABLED", "ENABLING"}:
        await dynamodb.update_time_to_live(
            TableName=table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": EXPIRY_ATTRIBUTE},
        )


async def _table_active(dynamodb: DynamoDBClient, table: str) -> None:
    waiter = dynamodb.get_waiter("table_exists")
    await waiter.wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})


async def _ensure_indexes(dynamodb: DynamoDBClient, table: str) -> None:
    """Adds the listing indexes a table lacks: one made by the original service (which had
    none) or by an earlier version of this one. DynamoDB adds one index per table update."""
    description = await dynamodb.describe_table(TableName=table)
    existing = {
        index["IndexName"] for index in description["Table"].get("GlobalSecondaryIndexes", [])
    }
    for index in _index_definitions():
        if index["IndexName"] in existing:
            continue
        await _table_active(dynamodb, table)
        await dynamodb.update_table(
            TableName=table,
            AttributeDefinitions=_attribute_definitions(),  # type: ignore[arg-type]  # plain dicts
            GlobalSecondaryIndexUpdates=[{"Create": index}],  # type: ignore[typeddict-item]  # as above
        )
        log.info("adding index %s to table %s", index["IndexName"], table)


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
