"""The upload-URL path's group commit (creations arriving together share BatchWriteItem calls),
against moto's DynamoDB refusing an item for real: one creation's bad values fail that creation
alone, never the strangers whose writes shared its batch."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from image_service.domain.errors import Unstorable
from image_service.domain.models import ImageRecord, ImageStatus
from image_service.storage.clients import aws_clients
from image_service.storage.dynamo import ImageRepository
from tests.integration.conftest import MakeApi

# The table's behaviour, under both transports (IMAGE_SERVICE_AWS_TRANSPORT): every test here
# that makes an API runs once on each.
BOTH_TRANSPORTS = True

# DynamoDB keeps a partition key to 2,048 bytes and refuses the whole batch holding a longer one.
TOO_LONG_KEY = "x" * 3000


def _pending(owner: str, *tags: str) -> ImageRecord:
    now = datetime.now(UTC)
    image_id = str(uuid.uuid4())
    return ImageRecord(
        user_id=owner,
        image_id=image_id,
        s3_key=f"images/{owner}/{image_id}/original",
        content_type="image/png",
        status=ImageStatus.PENDING,
        upload_time=now,
        updated_at=now,
        tags=list(tags),
    )


@pytest.mark.parametrize("hostile", [1, 4, 12])
async def test_a_creation_dynamodb_refuses_fails_alone(make_api: MakeApi, hostile: int) -> None:
    api = await make_api(embedded_worker=False)
    bystanders = [_pending(f"user-{n}", "cat") for n in range(120)]
    refused = [_pending(TOO_LONG_KEY) for _ in range(hostile)]
    # The refused ones spread among the others, so that every batch could hold one.
    step = len(bystanders) // hostile
    arriving = list(bystanders)
    for n, record in enumerate(refused):
        arriving.insert(n * (step + 1) + step // 2, record)

    async with aws_clients(api.settings) as clients:
        repository = ImageRepository(clients.table, api.settings.table)
        outcomes = await asyncio.gather(
            *(repository.create(record) for record in arriving), return_exceptions=True
        )
        by_id = {
            record.image_id: outcome for record, outcome in zip(arriving, outcomes, strict=True)
        }
        assert all(isinstance(by_id[record.image_id], Unstorable) for record in refused)
        # Each bystander got its record back as stored (its first revision), not an error.
        assert all(by_id[r.image_id] == replace(r, revision=1) for r in bystanders)
        for record in bystanders:
            assert await repository.get(record.user_id, record.image_id) is not None
