"""What DynamoDB holds: the listing indexes, and tag copies that follow their image through every
change, so that listing by tag never shows a stale image or misses one."""

from __future__ import annotations

import uuid
from typing import Any

from image_service.settings import Settings
from image_service.storage.clients import provision
from tests import images
from tests.integration.conftest import JWT_SECRET, Api, emulator_client

# The table's behaviour, under both transports (IMAGE_SERVICE_AWS_TRANSPORT): every test here
# that makes an API runs once on each.
BOTH_TRANSPORTS = True


def _partition(api: Api, moto_endpoint: str, user: str = "alice") -> dict[str, dict[str, Any]]:
    """Every item in the user's partition, by sort key."""
    items = emulator_client("dynamodb", moto_endpoint).query(
        TableName=api.settings.table,
        KeyConditionExpression="user_id = :user",
        ExpressionAttributeValues={":user": {"S": user}},
        ConsistentRead=True,
    )["Items"]
    return {item["image_id"]["S"]: item for item in items}


async def test_tag_copies_follow_the_image_through_edits_and_delete(
    api: Api, moto_endpoint: str
) -> None:
    upload, _, _ = await api.upload(images.jpeg(), tags=["sea", "sun"])
    image_id = upload["image_id"]
    stored = _partition(api, moto_endpoint)
    assert sorted(key for key in stored if key.startswith(image_id)) == [
        image_id,
        f"{image_id}#tag#sea",
        f"{image_id}#tag#sun",
    ]
    copy = stored[f"{image_id}#tag#sea"]
    assert copy["status"] == {"S": "ready"}, "the worker's result reached the copies"
    assert copy["variants"] == stored[image_id]["variants"]
    assert "upload_sort" not in copy, "a copy never shows up in the unfiltered listing"

    status, _, _ = await api.call("PATCH", f"/images/{image_id}", json={"tags": ["sun", "Dune"]})
    assert status == 200
    assert sorted(key for key in _partition(api, moto_endpoint) if key.startswith(image_id)) == [
        image_id,
        f"{image_id}#tag#dune",
        f"{image_id}#tag#sun",
    ]

    # In the trash: the copies go (the trash is listed by its own index), the image stays.
    status, _, _ = await api.call("DELETE", f"/images/{image_id}")
    assert status == 204
    trashed = _partition(api, moto_endpoint)
    assert [key for key in trashed if key.startswith(image_id)] == [image_id]
    assert "upload_sort" not in trashed[image_id], "out of the unfiltered listing"
    assert trashed[image_id]["trash_sort"]["S"].endswith(image_id)

    status, _, _ = await api.call("DELETE", f"/images/{image_id}", params={"permanent": "true"})
    assert status == 204
    assert not [key for key in _partition(api, moto_endpoint) if key.startswith(image_id)]


async def test_provisioning_adds_the_listing_indexes_to_an_older_table(moto_endpoint: str) -> None:
    """A table made by the original service has the same keys and no index: `init` adds them."""
    suffix = uuid.uuid4().hex[:12]
    settings = Settings(
        jwt_secret=JWT_SECRET,
        bucket=f"images-{suffix}",
        table=f"images-{suffix}",
        queue_name=f"jobs-{suffix}",
        s3_event_notifications=False,
    )
    dynamodb = emulator_client("dynamodb", moto_endpoint)
    dynamodb.create_table(
        TableName=settings.table,
        AttributeDefinitions=[
            {"AttributeName": "user_id", "AttributeType": "S"},
            {"AttributeName": "image_id", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "user_id", "KeyType": "HASH"},
            {"AttributeName": "image_id", "KeyType": "RANGE"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    await provision(settings)
    table = dynamodb.describe_table(TableName=settings.table)["Table"]
    indexes = {
        index["IndexName"]: [key["AttributeName"] for key in index["KeySchema"]]
        for index in table["GlobalSecondaryIndexes"]
    }
    assert indexes == {
        "by_upload_time": ["user_id", "upload_sort"],
        "by_status": ["status_key", "upload_sort"],
        "by_tag": ["tag_key", "tag_sort"],
        "by_attention": ["attention_key", "attention_sort"],
        "by_taken": ["user_id", "taken_sort"],
        "by_trash": ["trash_key", "trash_sort"],
    }
