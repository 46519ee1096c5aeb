"""An import over the fakes where the network plays no part: what is checked before anything
is fetched, and an import cut short between its fetch and its completion."""

from __future__ import annotations

from dataclasses import replace

import pytest

from image_service.domain.errors import InvalidRequest
from image_service.domain.imports import ImportRequest
from image_service.domain.layout import incoming_key
from image_service.domain.models import ImageStatus
from tests import images
from tests.unit.domain.conftest import make_world, principal


async def test_an_import_fetched_then_cut_short_is_completed_by_its_redelivered_job() -> None:
    world = make_world(import_allow_private=True)
    started = await world.imports.start(
        principal(), ImportRequest(url="http://10.0.0.7/a.jpg"), idempotency_key=None
    )
    assert started.status is ImageStatus.FETCHING
    assert world.jobs.sent[-1] == {
        "type": "import",
        "user_id": "alice",
        "image_id": started.image_id,
    }
    # The worker fetched it and made it pending, then died before completing it.
    data = images.jpeg()
    world.store.put(incoming_key(started), data, "image/jpeg")
    pending = replace(
        world.table.records[("alice", started.image_id)],
        status=ImageStatus.PENDING,
        content_type="image/jpeg",
        declared_size=len(data),
    )
    assert await world.table.replace_if_status(pending, ImageStatus.FETCHING)

    await world.imports.fetch("alice", started.image_id)  # the job, delivered again
    assert world.table.records[("alice", started.image_id)].status is ImageStatus.PROCESSING


async def test_a_private_url_is_refused_before_anything_is_stored() -> None:
    world = make_world()
    with pytest.raises(InvalidRequest) as refused:
        await world.imports.start(
            principal(), ImportRequest(url="http://10.0.0.7/a.jpg"), idempotency_key=None
        )
    assert refused.value.code == "import_refused"
    assert world.table.records == {}
    assert world.jobs.sent == []
