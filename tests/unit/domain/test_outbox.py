"""The outbox, over the fakes: every event a change owes is stored with the change (its feed
entry, and a job per webhook destination), sent at once when the queue takes it, and left for
the relay when it does not; the relay waits its grace, then sends, keeping the webhook-id."""

from __future__ import annotations

from datetime import timedelta

import pytest

from image_service.domain.errors import BackendUnavailable, UploadRejected
from image_service.settings import Settings
from image_service.worker.relay import OutboxRelay
from tests import images
from tests.unit.domain.conftest import WEBHOOK_SECRET, World, make_world, principal

HOOKS = {"webhook_url": "https://hooks.example.com/in", "webhook_secret": WEBHOOK_SECRET}
GRACE = timedelta(seconds=Settings.outbox_grace_seconds)


def _relay(world: World) -> OutboxRelay:
    return OutboxRelay(outbox=world.table, jobs=world.jobs, grace=GRACE, clock=world.clock)


async def test_a_change_sends_what_it_owes_and_takes_it_out_of_the_outbox() -> None:
    world = make_world(**HOOKS)
    record = await world.ready(images.jpeg())
    await world.trash.delete(principal(), record.image_id, None, permanent=True)
    [job] = [job for job in world.jobs.sent if job.get("type") == "webhook"]
    assert job["body"]["type"] == "image.deleted"
    assert job["id"].startswith("msg_")
    assert world.table.owed == []
    assert [entry.event_type for _, entry in world.table.feed][-1] == "image.deleted"


async def test_a_job_the_queue_refuses_waits_for_the_relay_with_its_id() -> None:
    world = make_world(**HOOKS)
    record = await world.ready(images.jpeg())
    world.jobs.refusing = True
    await world.trash.delete(principal(), record.image_id, None, permanent=True)  # it stands
    assert (record.user_id, record.image_id) not in world.table.records
    [owed] = world.table.owed
    world.jobs.refusing = False

    assert await _relay(world).relay() == []  # within the grace: its own process may send it
    world.clock.advance(seconds=GRACE.total_seconds() + 0.001)
    assert await _relay(world).relay() == [owed.job]
    assert world.jobs.sent[-1]["id"] == owed.job["id"]  # the webhook-id the change gave it
    assert world.table.owed == []
    assert await _relay(world).relay() == []  # sent once


async def test_a_relay_refused_by_the_queue_leaves_the_job_for_its_next_pass() -> None:
    world = make_world(**HOOKS)
    record = await world.ready(images.jpeg())
    world.jobs.refusing = True
    await world.trash.delete(principal(), record.image_id, None, permanent=True)
    world.clock.advance(minutes=1)
    with pytest.raises(BackendUnavailable):
        await _relay(world).relay()
    assert len(world.table.owed) == 1
    world.jobs.refusing = False
    assert len(await _relay(world).relay()) == 1


async def test_without_webhooks_a_change_owes_its_feed_entry_only(world: World) -> None:
    record = await world.ready(images.jpeg())
    await world.trash.delete(principal(), record.image_id, None)
    await world.trash.restore(principal(), record.image_id, None)
    assert world.table.owed == []
    assert [entry.event_type for _, entry in world.table.feed] == [
        "image.processing",
        "image.trashed",
        "image.restored",
    ]
    assert [event for event, _ in world.heard] == [
        "image.processing",
        "image.trashed",
        "image.restored",
    ]


async def test_a_refused_upload_owes_its_rejection_to_both_destinations() -> None:
    world = make_world(**HOOKS, webhook_allow_private=True)
    record, _ = await world.upload(images.HTML, callback_url="https://app.example.com/cb")
    with pytest.raises(UploadRejected) as refused:
        await world.completion.complete(principal(), record.image_id, None)
    assert refused.value.code == "content_mismatch"
    jobs = [job for job in world.jobs.sent if job.get("type") == "webhook"]
    assert sorted(job["key"] for job in jobs) == ["operator", "owner"]
    assert len({job["id"] for job in jobs}) == 1  # one event, one webhook-id
    assert world.table.owed == []
