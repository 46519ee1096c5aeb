"""Creating the bucket, table and queues the service needs (idempotent: safe to run on every
deploy), and checking resources made otherwise (a CloudFormation stack) against the same
definitions: ``image-service init --verify``."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
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


PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
# Uploads that were never completed (or whose completion failed) go away, parts included.
ABANDONED_UPLOADS_RULE = {
    "ID": "expire-abandoned-uploads",
    "Filter": {"Prefix": "incoming/"},
    "Status": "Enabled",
    "Expiration": {"Days": ABANDONED_UPLOAD_DAYS},
    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
}
UPLOAD_EVENTS = ["s3:ObjectCreated:*"]
UPLOAD_PREFIX_FILTER = {"Key": {"FilterRules": [{"Name": "prefix", "Value": "incoming/"}]}}


def cors_rule(cors_origins: Sequence[str]) -> dict[str, Any]:
    return {
        "AllowedOrigins": list(cors_origins),
        "AllowedMethods": ["PUT", "POST", "GET", "HEAD"],
        "AllowedHeaders": ["*"],
        "ExposeHeaders": _CORS_EXPOSE_HEADERS,
        "MaxAgeSeconds": 3600,
    }


def dead_letter_queue_name(name: str) -> str:
    return f"{name}-dlq"


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
    async with _unless_not_implemented(bucket, "public access blocks"):
        await s3.put_public_access_block(
            Bucket=bucket,
            PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK,  # type: ignore[arg-type]  # plain dict
        )
    async with _unless_not_implemented(
        bucket, "lifecycle rules (abandoned uploads are not aborted)"
    ):
        await s3.put_bucket_lifecycle_configuration(
            Bucket=bucket,
            LifecycleConfiguration={"Rules": [ABANDONED_UPLOADS_RULE]},  # type: ignore[list-item]  # plain dict
        )
    async with _unless_not_implemented(bucket, "CORS rules (browser uploads)"):
        await s3.put_bucket_cors(
            Bucket=bucket,
            CORSConfiguration={"CORSRules": [cors_rule(cors_origins)]},  # type: ignore[list-item]  # plain dict
        )


@contextlib.asynccontextmanager
async def _unless_not_implemented(bucket: str, feature: str) -> AsyncIterator[None]:
    """An S3-compatible store that lacks a bucket feature says NotImplemented: the bucket
    serves without it, and the operator is told what to set up instead
    (docs/deployment.md, "S3-compatible stores")."""
    try:
        yield
    except ClientError as exc:
        if error_code(exc) != "NotImplemented":
            raise
        log.warning(
            "bucket %s: this store does not implement %s (docs/deployment.md: S3-compatible "
            "stores)",
            bucket,
            feature,
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
        QueueName=dead_letter_queue_name(name),
        Attributes={"MessageRetentionPeriod": str(14 * 24 * 3600)},
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
    policy = {"Version": "2012-10-17", "Statement": [_bucket_may_send(arn, bucket)]}
    await sqs.set_queue_attributes(QueueUrl=queue, Attributes={"Policy": json.dumps(policy)})
    try:
        await _put_notification(s3, bucket, arn)
    except ClientError as exc:
        # Emulators without cross-service notifications refuse this; completion still works.
        log.warning("bucket notifications not set up (%s): uploads need complete", error_code(exc))


def _bucket_may_send(queue_arn: str, bucket: str) -> dict[str, Any]:
    return {
        "Effect": "Allow",
        "Principal": {"Service": "s3.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": queue_arn,
        "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"}},
    }


async def _put_notification(s3: S3Client, bucket: str, arn: str) -> None:
    await s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {"QueueArn": arn, "Events": UPLOAD_EVENTS, "Filter": UPLOAD_PREFIX_FILTER}  # type: ignore[misc, list-item]  # plain dicts
            ]
        },
    )


# -- verify: what init would create or change, reported instead of done -----------------------

_MISSING = {
    "NoSuchBucket",
    "404",
    "NoSuchLifecycleConfiguration",
    "NoSuchCORSConfiguration",
    "NoSuchPublicAccessBlockConfiguration",
    "ResourceNotFoundException",
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
}


async def _or_none(call: Any) -> Any:
    """The answer of an AWS read, or None when what it reads does not exist."""
    try:
        return await call
    except ClientError as exc:
        if error_code(exc) in _MISSING:
            return None
        raise


async def bucket_differences(
    s3: S3Client, bucket: str, *, cors_origins: Sequence[str]
) -> list[str]:
    if await _or_none(s3.head_bucket(Bucket=bucket)) is None:
        return [f"bucket {bucket}: missing"]
    found: list[str] = []
    block = await _or_none(s3.get_public_access_block(Bucket=bucket))
    if block is None or block["PublicAccessBlockConfiguration"] != PUBLIC_ACCESS_BLOCK:
        found.append(f"bucket {bucket}: public access is not blocked in full")
    lifecycle = await _or_none(s3.get_bucket_lifecycle_configuration(Bucket=bucket))
    rules = {rule.get("ID"): rule for rule in (lifecycle or {}).get("Rules", [])}
    rule = rules.get(ABANDONED_UPLOADS_RULE["ID"])
    if rule is None or any(rule.get(k) != v for k, v in ABANDONED_UPLOADS_RULE.items()):
        found.append(f"bucket {bucket}: lifecycle rule {ABANDONED_UPLOADS_RULE['ID']} differs")
    cors = await _or_none(s3.get_bucket_cors(Bucket=bucket))
    wanted = cors_rule(cors_origins)
    if not any(
        all(sorted(r.get(k) or []) == sorted(v) for k, v in wanted.items() if isinstance(v, list))
        and r.get("MaxAgeSeconds") == wanted["MaxAgeSeconds"]
        for r in (cors or {}).get("CORSRules", [])
    ):
        found.append(f"bucket {bucket}: no CORS rule for {', '.join(cors_origins) or 'no origin'}")
    return found


async def table_differences(dynamodb: DynamoDBClient, table: str) -> list[str]:
    description = await _or_none(dynamodb.describe_table(TableName=table))
    if description is None:
        return [f"table {table}: missing"]
    found: list[str] = []
    key = [(k["AttributeName"], k["KeyType"]) for k in description["Table"]["KeySchema"]]
    if key != [("user_id", "HASH"), ("image_id", "RANGE")]:
        found.append(f"table {table}: key schema {key} is not (user_id, image_id)")
    indexes = {
        index["IndexName"]: index
        for index in description["Table"].get("GlobalSecondaryIndexes", [])
    }
    for wanted in _index_definitions():
        index = indexes.get(wanted["IndexName"])
        if index is None:
            found.append(f"table {table}: index {wanted['IndexName']} missing")
        elif (
            index["KeySchema"] != wanted["KeySchema"] or index["Projection"] != wanted["Projection"]
        ):
            found.append(f"table {table}: index {wanted['IndexName']} differs")
    ttl = await dynamodb.describe_time_to_live(TableName=table)
    described = ttl["TimeToLiveDescription"]
    if (
        described.get("TimeToLiveStatus") not in {"ENABLED", "ENABLING"}
        or described.get("AttributeName") != EXPIRY_ATTRIBUTE
    ):
        found.append(f"table {table}: TTL is not on {EXPIRY_ATTRIBUTE}")
    return found


async def queue_differences(
    sqs: SQSClient, name: str, *, max_receives: int, visibility_timeout: int
) -> list[str]:
    found: list[str] = []
    dead_letters = await _or_none(sqs.get_queue_url(QueueName=dead_letter_queue_name(name)))
    if dead_letters is None:
        found.append(f"queue {dead_letter_queue_name(name)}: missing")
    queue = await _or_none(sqs.get_queue_url(QueueName=name))
    if queue is None:
        return [*found, f"queue {name}: missing"]
    attributes = (
        await sqs.get_queue_attributes(
            QueueUrl=queue["QueueUrl"], AttributeNames=["RedrivePolicy", "VisibilityTimeout"]
        )
    )["Attributes"]
    if attributes.get("VisibilityTimeout") != str(visibility_timeout):
        found.append(
            f"queue {name}: visibility timeout {attributes.get('VisibilityTimeout')} s, "
            f"not {visibility_timeout} s"
        )
    redrive = json.loads(attributes.get("RedrivePolicy", "{}"))
    if (
        not str(redrive.get("deadLetterTargetArn", "")).endswith(":" + dead_letter_queue_name(name))
        or int(redrive.get("maxReceiveCount", 0)) != max_receives
    ):
        found.append(
            f"queue {name}: dead letters not to {dead_letter_queue_name(name)} "
            f"after {max_receives} receives"
        )
    return found


async def notification_differences(
    s3: S3Client, sqs: SQSClient, bucket: str, queue_name: str
) -> list[str]:
    queue = await _or_none(sqs.get_queue_url(QueueName=queue_name))
    if queue is None:
        return []  # reported with the queue
    arn = (await sqs.get_queue_attributes(QueueUrl=queue["QueueUrl"], AttributeNames=["QueueArn"]))[
        "Attributes"
    ]["QueueArn"]
    configuration = await _or_none(s3.get_bucket_notification_configuration(Bucket=bucket))
    for entry in (configuration or {}).get("QueueConfigurations", []):
        if (
            entry.get("QueueArn") == arn
            and entry.get("Events") == UPLOAD_EVENTS
            and entry.get("Filter") == UPLOAD_PREFIX_FILTER
        ):
            return []
    return [f"bucket {bucket}: uploads under incoming/ are not sent to queue {queue_name}"]
