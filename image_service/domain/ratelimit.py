"""Per-key token buckets, in process memory.

Each replica limits on its own, so N replicas allow up to N times the rate: a bound on abuse, not
an exact global quota (an API gateway or a shared store is the tool for that).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from cachetools import LRUCache

from image_service.domain.errors import RateLimited


class TokenBucketLimiter:
    def __init__(
        self,
        *,
        per_minute: int,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_tracked_keys: int = 100_000,
        limited: str = "upload URLs",  # what the refusal says there were too many of
    ) -> None:
        self._limited = limited
        self._rate = per_minute / 60.0
        self._burst = float(burst)
        self._clock = clock
        # key -> (tokens, when counted). Bounded: the key idle longest is forgotten first, and
        # starts again with a full bucket.
        self._buckets: LRUCache[str, tuple[float, float]] = LRUCache(maxsize=max_tracked_keys)

    def take(self, key: str) -> None:
        """Spends one token for ``key``, or raises RateLimited saying when one is back."""
        now = self._clock()
        tokens, counted_at = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - counted_at) * self._rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            wait = math.ceil((1.0 - tokens) / self._rate)
            raise RateLimited(
                f"Too many {self._limited} requested; slow down.",
                details={"retry_after_seconds": wait},
                retry_after=wait,
            )
        self._buckets[key] = (tokens - 1.0, now)
