"""The bound on renders counts renders: a request that gives up (its deadline fired) leaves
its render running in its thread, and the slot stays taken until that thread is free. Renders
run in a pool of their own, never in the threads completions decode in.

Renditions runs here on in-memory stand-ins for the record store and the bucket, with the
service's own ThreadRenderer and a render that waits for the test to let it finish."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from image_service.domain.errors import RendersBusy, TooManyHeld
from image_service.domain.models import ImageRecord, ImageStatus
from image_service.domain.ratelimit import TokenBucketLimiter
from image_service.domain.renditions import Renditions, RenditionSigner, RenditionSpec, edition
from image_service.imaging.render import RenderedVariant
from image_service.programs.services import ThreadRenderer, rendition_policy
from image_service.settings import Settings
from tests.waiting import until

NOW = datetime(2026, 12, 1, tzinfo=UTC)


class Gate:
    """A render that runs until the test opens the gate, noting the thread it ran in."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.opened = threading.Event()
        self.threads: list[str] = []

    def __call__(self, data: bytes, **_: Any) -> RenderedVariant:
        self.threads.append(threading.current_thread().name)
        self.started.set()
        assert self.opened.wait(10)
        return RenderedVariant(
            name="r",
            format="jpeg",
            content_type="image/jpeg",
            extension="jpg",
            width=1,
            height=1,
            data=b"rendered",
        )


def _record(owner: str, image_id: str) -> ImageRecord:
    return ImageRecord(
        user_id=owner,
        image_id=image_id,
        s3_key=f"images/{owner}/{image_id}/original",
        content_type="image/jpeg",
        status=ImageStatus.READY,
        upload_time=NOW,
        updated_at=NOW,
    )


def _renditions(gate: Gate, **settings: Any) -> tuple[Renditions, ThreadRenderer]:
    configured = Settings(jwt_secret="k" * 32, **settings)
    policy = rendition_policy(configured, configured)
    objects: dict[str, tuple[bytes, str]] = {}

    async def read(key: str) -> tuple[bytes, str] | None:
        return objects.get(key) or ((b"original", '"o"') if key.endswith("/original") else None)

    async def write(key: str, data: bytes, _content_type: str) -> str:
        objects[key] = (data, '"r"')
        return '"r"'

    async def delete(keys: list[str]) -> None:
        for key in keys:
            objects.pop(key, None)

    async def get_record(owner: str, image_id: str) -> ImageRecord:
        return _record(owner, image_id)

    renderer = ThreadRenderer(policy.max_renders, gate)
    renditions = Renditions(
        policy=policy,
        signer=RenditionSigner(policy.keys, policy.url_window, lambda: NOW),
        get_record=get_record,
        read_object=read,
        write_object=write,
        delete_objects=delete,
        render=renderer,
        limiter=TokenBucketLimiter(per_minute=600, burst=100),
        observe=lambda *_: None,
    )
    return renditions, renderer


def _spec(width: int) -> RenditionSpec:
    return RenditionSpec(width, None, "inside", "jpeg", None)


async def _deliver(renditions: Renditions, owner: str, width: int) -> Any:
    image_id = f"00000000-0000-4000-8000-{width:012d}"
    made_from = edition(_record(owner, image_id))
    return await renditions.deliver(
        owner, image_id, _spec(width), made_from, accept="", if_none_match=""
    )


async def test_a_render_whose_request_gave_up_keeps_its_slot_until_it_ends() -> None:
    gate = Gate()
    renditions, renderer = _renditions(gate, max_concurrent_renders=1)
    try:
        given_up = asyncio.create_task(_deliver(renditions, "alice", 320))
        await asyncio.to_thread(gate.started.wait, 5)
        given_up.cancel()  # the request's deadline
        with pytest.raises(asyncio.CancelledError):
            await given_up
        assert renditions.rendering == 1  # Pillow is still at it
        with pytest.raises(RendersBusy):
            await _deliver(renditions, "bob", 256)
        gate.opened.set()
        await until(lambda: renditions.rendering == 0, within=5)
        delivery = await _deliver(renditions, "bob", 256)
        assert delivery.data == b"rendered"
        assert set(gate.threads) <= {f"render_{n}" for n in range(1)}  # its own pool
    finally:
        gate.opened.set()
        renderer.close()


async def test_one_user_takes_only_their_share_of_the_renders() -> None:
    gate = Gate()
    renditions, renderer = _renditions(gate, max_concurrent_renders=4, max_renders_per_user=2)
    try:
        mine = [asyncio.create_task(_deliver(renditions, "alice", w)) for w in (320, 256)]
        await until(lambda: renditions.rendering >= 2, within=5)
        with pytest.raises(TooManyHeld) as refused:
            await _deliver(renditions, "alice", 128)
        assert (refused.value.code, refused.value.http_status) == ("too_many_renders", 429)
        assert refused.value.retry_after == 1
        theirs = asyncio.create_task(_deliver(renditions, "bob", 128))
        await until(lambda: renditions.rendering >= 3, within=5)
        gate.opened.set()
        for delivery in await asyncio.gather(*mine, theirs):
            assert delivery.data == b"rendered"
    finally:
        gate.opened.set()
        renderer.close()
