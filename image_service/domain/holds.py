"""Bounds on what requests hold while they run: held waits and event streams, renders,
completions. Each has a bound per process (what the replica can afford) and one per user (so
that one user, however many requests they open, leaves the others their share).

Beyond the process's bound the answer is the resource's own 503 (the replica is busy: another
may not be); beyond the user's, a 429 with ``Retry-After`` (this caller is holding enough).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager

from image_service.domain.errors import ServiceError, TooManyHeld


class Holds:
    def __init__(
        self,
        *,
        resource: str,
        code: str,
        per_user: int,
        per_process: int | None = None,
        process_full: Callable[[int], ServiceError] | None = None,
    ) -> None:
        assert per_process is None or process_full is not None
        self._resource = resource
        self._code = code
        self._per_user = per_user
        self._per_process = per_process
        self._process_full = process_full
        self._by_user: Counter[str] = Counter()
        self._total = 0

    @property
    def total(self) -> int:
        return self._total

    def held_by(self, user: str) -> int:
        return self._by_user[user]

    def take(self, user: str) -> None:
        """One more held by ``user``, or the refusal of whichever bound it would cross."""
        if self._per_process is not None and self._total >= self._per_process:
            assert self._process_full is not None
            raise self._process_full(self._per_process)
        if self._by_user[user] >= self._per_user:
            raise TooManyHeld(self._code, self._resource, self._per_user)
        self._by_user[user] += 1
        self._total += 1

    def give_back(self, user: str) -> None:
        self._total -= 1
        self._by_user[user] -= 1
        if self._by_user[user] <= 0:
            del self._by_user[user]  # a user holding nothing costs no memory

    @contextmanager
    def held(self, user: str) -> Iterator[None]:
        self.take(user)
        try:
            yield
        finally:
            self.give_back(user)


class SharedSlots:
    """A process's few slots for heavy work (a completion's spool and decode), shared so that
    one user never holds them all: each user takes at most ``per_user`` at once (fewer than
    there are), and waits for their own turn without holding one meanwhile."""

    def __init__(self, slots: int) -> None:
        self._slots = asyncio.Semaphore(slots)
        self._per_user = max(1, slots - 1)
        self._own: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def held(self, user: str) -> AsyncIterator[None]:
        own, users = self._own.setdefault(user, (asyncio.Semaphore(self._per_user), [0]))
        users[0] += 1
        try:
            async with own, self._slots:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._own[user]
