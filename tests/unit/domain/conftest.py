"""The domain's unit tier: the image lifecycle wired exactly as the service wires it
(``programs.services.image_lifecycle``, the production settings' defaults) over the in-memory
fakes of its ports (tests/fakes.py), with a clock the test holds."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from image_service.domain.completion import Completion
from image_service.domain.events import ImageEvents
from image_service.domain.imports import Imports
from image_service.domain.layout import incoming_key
from image_service.domain.library import Library
from image_service.domain.models import ImageRecord, ImageStatus, Principal
from image_service.domain.trash import Trash
from image_service.domain.uploads import UploadRequest, Uploads
from image_service.programs.services import Images, image_events, image_lifecycle
from image_service.settings import Settings, callback_masters
from tests.fakes import FakeIdempotency, FakeJobs, FakeObjects, FakeTable

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"unit-tier-webhook-key-0123456789").decode()


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime(2026, 12, 6, 12, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class World:
    """The four jobs of the lifecycle and the fakes under them."""

    images: Images
    store: FakeObjects
    table: FakeTable
    idempotency: FakeIdempotency
    jobs: FakeJobs
    events: ImageEvents
    clock: Clock
    settings: Settings
    heard: list[tuple[str, ImageRecord]]

    @property
    def uploads(self) -> Uploads:
        return self.images.uploads

    @property
    def completion(self) -> Completion:
        return self.images.completion

    @property
    def library(self) -> Library:
        return self.images.library

    @property
    def imports(self) -> Imports:
        return self.images.imports

    @property
    def trash(self) -> Trash:
        return self.images.trash

    async def upload(
        self, data: bytes, user: str = "alice", **request: Any
    ) -> tuple[ImageRecord, Any]:
        """An upload URL asked for, and ``data`` PUT at its key as a client would."""
        request.setdefault("content_type", "image/jpeg")
        record, upload = await self.uploads.create_upload(principal(user), UploadRequest(**request))
        self.store.put(incoming_key(record), data, request["content_type"])
        return record, upload

    async def uploaded(self, data: bytes, user: str = "alice", **request: Any) -> ImageRecord:
        """An upload sent and completed: the image as completion left it (processing)."""
        record, _ = await self.upload(data, user, **request)
        return await self.completion.complete(principal(user), record.image_id, None)

    async def ready(self, data: bytes, user: str = "alice", **request: Any) -> ImageRecord:
        """A completed image the worker has published (ready), as the pipeline leaves it."""
        record = await self.uploaded(data, user, **request)
        stored = self.table.records[(record.user_id, record.image_id)]
        ready = replace(stored, status=ImageStatus.READY)
        assert await self.table.replace_if_status(ready, ImageStatus.PROCESSING)
        return self.table.records[(record.user_id, record.image_id)]


def principal(user: str = "alice", *, admin: bool = False) -> Principal:
    return Principal(user_id=user, is_admin=admin)


def sha256_base64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def make_world(**overrides: Any) -> World:
    settings = Settings(jwt_secret="unit-tier-" + "k" * 40, **overrides)
    clock = Clock()
    store, table, idempotency, jobs = FakeObjects(clock), FakeTable(), FakeIdempotency(), FakeJobs()
    events = image_events(
        settings, jobs, outbox=table, masters=callback_masters(settings), clock=clock
    )
    heard: list[tuple[str, ImageRecord]] = []
    events.listen(lambda event_type, record: heard.append((event_type, record)))
    images = image_lifecycle(
        store=store,
        repository=table,
        listing=table,
        idempotency=idempotency,
        jobs=jobs,
        events=events,
        settings=settings,
        clock=clock,
    )
    return World(images, store, table, idempotency, jobs, events, clock, settings, heard)


@pytest.fixture
def world() -> World:
    return make_world()
