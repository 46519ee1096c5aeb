"""moto's CloudFront for the tests: a distribution to purge, and what was purged."""

from __future__ import annotations

import asyncio
import base64
import uuid
from typing import Any

from tests.integration.conftest import emulator_client


def distribution(moto_endpoint: str) -> tuple[Any, str]:
    cloudfront = emulator_client("cloudfront", moto_endpoint)
    origin = "images.example.com"
    created = cloudfront.create_distribution(
        DistributionConfig={
            "CallerReference": uuid.uuid4().hex,
            "Comment": "rendition URLs",
            "Enabled": True,
            "Origins": {
                "Quantity": 1,
                "Items": [
                    {
                        "Id": "api",
                        "DomainName": origin,
                        "CustomOriginConfig": {
                            "HTTPPort": 80,
                            "HTTPSPort": 443,
                            "OriginProtocolPolicy": "https-only",
                        },
                    }
                ],
            },
            "DefaultCacheBehavior": {
                "TargetOriginId": "api",
                "ViewerProtocolPolicy": "redirect-to-https",
                "MinTTL": 0,
                "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
            },
        }
    )
    return cloudfront, created["Distribution"]["Id"]


def invalidated_paths(cloudfront: Any, distribution_id: str) -> list[list[str]]:
    listed = cloudfront.list_invalidations(DistributionId=distribution_id)["InvalidationList"]
    found = []
    for summary in listed.get("Items", []):
        batch = cloudfront.get_invalidation(DistributionId=distribution_id, Id=summary["Id"])
        found.append(sorted(batch["Invalidation"]["InvalidationBatch"]["Paths"]["Items"]))
    return found


def rendition_paths(owner: str, image_id: str) -> list[str]:
    segment = base64.urlsafe_b64encode(owner.encode()).rstrip(b"=").decode()
    return [f"/r/{segment}/{image_id}/*"]


async def purged(cloudfront: Any, distribution_id: str, count: int) -> list[list[str]]:
    """The invalidations, once there are ``count`` (read off the loop: the worker is on it)."""
    async with asyncio.timeout(15):
        while True:
            found = await asyncio.to_thread(invalidated_paths, cloudfront, distribution_id)
            if len(found) >= count:
                return found
            await asyncio.sleep(0.2)
