"""Each owner's quota: how many images and bytes they may keep, and how many multipart uploads
they may hold open. Upload URLs are checked against a usage figure a few seconds old (no read per
request); completion counts exactly, in the same transaction as the image it counts."""

from __future__ import annotations

import time

from cachetools import TTLCache

from image_service.domain.errors import QuotaExceeded, TooManyHeld
from image_service.domain.models import Usage
from image_service.domain.policy import UploadPolicy
from image_service.domain.ports import Records

_MAX_CACHED_USAGES = 100_000


class Quota:
    def __init__(self, repository: Records, policy: UploadPolicy) -> None:
        self._repository = repository
        self._policy = policy
        # owner -> usage, for a few seconds: keeps the upload-URL path free of a read per request.
        self._usage_cache: TTLCache[str, Usage] = TTLCache(
            maxsize=_MAX_CACHED_USAGES, ttl=policy.usage_cache_seconds, timer=time.monotonic
        )

    def forget(self, owner: str) -> None:
        """The owner's usage changed (an image counted or deleted): read it afresh next time."""
        self._usage_cache.pop(owner, None)

    async def check(self, owner: str, size: int) -> None:
        policy = self._policy
        usage = self._usage_cache.get(owner)
        if usage is None:
            usage = await self._repository.usage(owner)
            self._usage_cache[owner] = usage
        if usage.images >= policy.max_images_per_user or (
            usage.bytes + size > policy.max_bytes_per_user
        ):
            raise QuotaExceeded(
                "The owner's image quota is used up.",
                details={
                    "images": usage.images,
                    "bytes": usage.bytes,
                    "max_images": policy.max_images_per_user,
                    "max_bytes": policy.max_bytes_per_user,
                },
            )

    async def check_open_multipart(self, owner: str, size: int) -> None:
        """A multipart upload holds its parts in S3 (up to max_multipart_bytes) from its first
        part on: each user has a few open at once, and their declared bytes count against the
        byte quota before they are complete."""
        policy = self._policy
        open_uploads = await self._repository.open_multipart(owner)
        if len(open_uploads) >= policy.max_open_multipart_per_user:
            raise TooManyHeld(
                "too_many_multipart_uploads",
                "open multipart uploads",
                policy.max_open_multipart_per_user,
            )
        pending = sum(record.declared_size or 0 for record in open_uploads)
        usage = await self._repository.usage(owner)
        if usage.bytes + pending + size > policy.max_bytes_per_user:
            raise QuotaExceeded(
                "The owner's byte quota, with the multipart uploads under way, has no room.",
                details={
                    "bytes": usage.bytes,
                    "pending_multipart_bytes": pending,
                    "max_bytes": policy.max_bytes_per_user,
                },
            )
