"""Many images changed by one call, a few at a time: a call of 100 images is not 100 writes at
once (albums' memberships, bulk operations)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

AT_ONCE = 10  # images changed at once by one call


async def bounded_gather(
    items: Sequence[T], one: Callable[[T], Awaitable[R]], *, at_once: int = AT_ONCE
) -> list[R]:
    """``one`` of each item, in order, ``at_once`` at a time."""
    slots = asyncio.Semaphore(at_once)

    async def bounded(item: T) -> R:
        async with slots:
            return await one(item)

    return await asyncio.gather(*(bounded(item) for item in items))
