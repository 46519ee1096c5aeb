"""A bulk job's life over the fakes: one worker at a time by its lease, taken over when the
lease runs out, put back through an outage, and its place among the owner's jobs given back
only when it ends."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta

import pytest

from image_service.domain.batch import (
    LEASE_SECONDS,
    MAX_ACTIVE_JOBS,
    RETRY_SECONDS,
    BatchOps,
    BatchRequest,
)
from image_service.domain.errors import Conflict
from tests import images
from tests.fakes import FakeBatchStore
from tests.unit.domain.conftest import World, make_world, principal


def _ops(world: World) -> tuple[BatchOps, FakeBatchStore]:
    store = FakeBatchStore()
    ops = BatchOps(
        library=world.library,
        trash=world.trash,
        listing=world.table,
        store=store,
        jobs=world.jobs,
        outbox=world.table,
        clock=world.clock,
    )
    return ops, store


async def _queued(world: World, ops: BatchOps, count: int = 3) -> tuple[str, list[str]]:
    """A tag job over ``count`` ready images and enough missing ones to make it a job."""
    ready = [(await world.ready(images.jpeg())).image_id for _ in range(count)]
    missing = [str(uuid.uuid4()) for _ in range(101 - count)]
    job = await ops.submit(
        principal(),
        None,
        BatchRequest(op="tag", image_ids=(*ready, *missing), tags=("bulk",)),
        idempotency_key=None,
    )
    assert (job.state, job.inline) == ("queued", False)
    assert world.jobs.sent[-1] == {"type": "batch", "user_id": "alice", "job_id": job.job_id}
    return job.job_id, ready


async def test_a_job_runs_to_its_end_and_gives_its_place_back() -> None:
    world = make_world()
    ops, store = _ops(world)
    job_id, ready = await _queued(world, ops)
    assert store.active["alice"] == 1
    await ops.work("alice", job_id)
    done = await ops.job(principal(), None, job_id)
    assert (done.state, done.total, done.succeeded, done.failed) == ("done", 101, 3, 98)
    assert done.lease_until is None
    assert store.active["alice"] == 0
    assert all(world.table.records[("alice", i)].tags == ["bulk"] for i in ready)
    await ops.work("alice", job_id)  # a duplicate message: nothing more happens
    assert (await ops.job(principal(), None, job_id)).revision == done.revision


async def test_a_job_another_worker_holds_is_put_back_until_its_lease_ends() -> None:
    world = make_world()
    ops, store = _ops(world)
    job_id, ready = await _queued(world, ops)
    held = store.jobs[("alice", job_id)]
    lease_end = world.clock() + timedelta(seconds=LEASE_SECONDS)
    store.jobs[("alice", job_id)] = replace(held, state="running", lease_until=lease_end)

    await ops.work("alice", job_id)  # a duplicate message meets the holder's lease
    assert world.jobs.sent[-1]["job_id"] == job_id
    assert world.jobs.delays[-1] == LEASE_SECONDS + 1
    assert store.jobs[("alice", job_id)].processed == 0
    assert all(world.table.records[("alice", i)].tags == [] for i in ready)

    # The holder died: once its lease has run out, the message takes the job over.
    world.clock.advance(seconds=LEASE_SECONDS + 1)
    await ops.work("alice", job_id)
    assert store.jobs[("alice", job_id)].state == "done"
    assert store.active["alice"] == 0


async def test_a_worker_that_lost_its_lease_stops_without_writing_over_the_new_holder() -> None:
    world = make_world()
    ops, store = _ops(world)
    job_id, _ = await _queued(world, ops)
    saves = 0
    save = store.save_batch_job

    async def taken_over_after_the_first_chunk(job, *, finished):  # type: ignore[no-untyped-def]
        nonlocal saves
        saves += 1
        if saves == 3:  # claim, first chunk: then another worker writes a revision first
            current = store.jobs[("alice", job.job_id)]
            store.jobs[("alice", job.job_id)] = replace(current, revision=current.revision + 1)
        return await save(job, finished=finished)

    store.save_batch_job = taken_over_after_the_first_chunk  # type: ignore[method-assign]
    await ops.work("alice", job_id)
    stopped = store.jobs[("alice", job_id)]
    assert stopped.state == "running"  # the other worker's to finish
    assert stopped.processed == 25  # the first chunk only
    assert store.active["alice"] == 1


async def test_an_outage_puts_the_job_back_and_keeps_its_place() -> None:
    world = make_world()
    ops, store = _ops(world)
    job_id, _ = await _queued(world, ops)
    world.table.outage = "dynamodb"
    await ops.work("alice", job_id)
    assert (world.jobs.sent[-1]["job_id"], world.jobs.delays[-1]) == (job_id, RETRY_SECONDS)
    assert store.active["alice"] == 1

    world.table.outage = None
    world.clock.advance(seconds=LEASE_SECONDS + 1)  # its lease from the cut-short run ends
    await ops.work("alice", job_id)
    assert store.jobs[("alice", job_id)].state == "done"
    assert store.active["alice"] == 0


async def test_an_owner_has_at_most_five_active_jobs() -> None:
    world = make_world()
    ops, store = _ops(world)
    jobs = [(await _queued(world, ops, count=0))[0] for _ in range(MAX_ACTIVE_JOBS)]
    with pytest.raises(Conflict) as refused:
        await _queued(world, ops, count=0)
    assert refused.value.code == "too_many_jobs"
    await ops.work("alice", jobs[0])
    await _queued(world, ops, count=0)  # one ended: room for one more
    assert store.active["alice"] == MAX_ACTIVE_JOBS
