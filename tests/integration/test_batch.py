"""Bulk operations: a result per image within the call for up to 100 ids, a job with progress
beyond (or by tag), each image changed as its own call would, concurrent edits kept, keyed
retries answered the same, and each owner's jobs bounded."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from tests.integration.conftest import Api, MakeApi

JOB_SECONDS = 30


async def _batch(api: Api, body: dict[str, Any], **kwargs: Any) -> tuple[int, Any, Any]:
    return await api.call("POST", "/images/batch", json=body, **kwargs)


async def _image(api: Api, image_id: str, user: str = "alice") -> dict[str, Any]:
    status, body, _ = await api.call("GET", f"/images/{image_id}", user=user)
    assert status == 200, body
    return body  # type: ignore[no-any-return]


async def _finished(api: Api, job: dict[str, Any]) -> dict[str, Any]:
    async with asyncio.timeout(JOB_SECONDS):
        while True:
            status, body, headers = await api.call("GET", f"/jobs/{job['job_id']}")
            assert status == 200, body
            assert headers["Cache-Control"] == "no-store"
            if body["state"] == "done":
                return body  # type: ignore[no-any-return]
            await asyncio.sleep(0.2)


async def test_a_result_for_each_id_partial_failures_included(api: Api) -> None:
    mine = await api.ready_images(3, tags=["old"])
    bobs = (await api.ready_images(1, user="bob"))[0]
    nobody = str(uuid.uuid4())
    ids = [*mine, nobody, bobs]

    status, body, headers = await _batch(api, {"op": "tag", "image_ids": ids, "tags": ["New"]})
    assert status == 200, body
    assert headers["Cache-Control"] == "no-store"
    assert body["results"] == [
        *({"image_id": image_id, "result": "ok"} for image_id in mine),
        {"image_id": nobody, "result": "image_not_found"},
        {"image_id": bobs, "result": "image_not_found"},  # another's is nobody's
    ]
    assert (body["succeeded"], body["failed"]) == (3, 2)
    for image_id in mine:
        assert (await _image(api, image_id))["tags"] == ["old", "new"]
    assert (await _image(api, bobs, user="bob"))["tags"] == []

    status, body, _ = await _batch(api, {"op": "untag", "image_ids": mine[:2], "tags": ["old"]})
    assert (status, body["succeeded"]) == (200, 2)
    assert (await _image(api, mine[0]))["tags"] == ["new"]

    status, body, _ = await _batch(
        api, {"op": "set_focal", "image_ids": mine, "focal": {"x": 0.1, "y": 0.9}}
    )
    assert (status, body["succeeded"]) == (200, 3)
    assert (await _image(api, mine[2]))["focal"] == {"x": 0.1, "y": 0.9}

    status, body, _ = await _batch(api, {"op": "delete", "image_ids": mine[:2]})
    assert (status, body["succeeded"]) == (200, 2)
    assert (await _image(api, mine[0]))["status"] == "trashed"
    status, body, _ = await _batch(api, {"op": "restore", "image_ids": mine})
    assert status == 200
    assert [r["result"] for r in body["results"]] == ["ok", "ok", "not_in_trash"]
    assert (await _image(api, mine[0]))["status"] == "ready"

    too_many = [f"t{n}" for n in range(20)]
    status, body, _ = await _batch(api, {"op": "tag", "image_ids": mine[:1], "tags": too_many})
    assert body["results"] == [{"image_id": mine[0], "result": "too_many_tags"}]
    assert (await _image(api, mine[0]))["tags"] == ["new"]  # left as it was


async def test_concurrent_edits_of_the_same_images_keep_each_others_changes(api: Api) -> None:
    ids = [(await api.upload_url(tags=["start"]))["image_id"] for _ in range(12)]
    ids += [str(uuid.uuid4())]  # a missing one among them changes nothing for the rest

    async def describe(image_id: str) -> None:
        status, _, _ = await api.call(
            "PATCH", f"/images/{image_id}", json={"description": "edited meanwhile"}
        )
        assert status == 200

    answers = await asyncio.gather(
        _batch(api, {"op": "tag", "image_ids": ids, "tags": ["a"]}),
        _batch(api, {"op": "tag", "image_ids": ids, "tags": ["b"]}),
        _batch(api, {"op": "set_focal", "image_ids": ids, "focal": {"x": 0.5, "y": 0.25}}),
        *(describe(image_id) for image_id in ids[:-1]),
    )
    for status, body, _ in answers[:3]:
        assert (status, body["succeeded"], body["failed"]) == (200, 12, 1)
    for image_id in ids[:-1]:
        image = await _image(api, image_id)
        assert sorted(image["tags"]) == ["a", "b", "start"]
        assert image["description"] == "edited meanwhile"
        assert image["focal"] == {"x": 0.5, "y": 0.25}


async def test_beyond_a_hundred_ids_it_is_a_job_with_progress(api: Api) -> None:
    mine = await api.ready_images(3)
    missing = [str(uuid.uuid4()) for _ in range(117)]
    status, job, headers = await _batch(
        api, {"op": "tag", "image_ids": [*mine, *missing], "tags": ["bulk"]}
    )
    assert status == 202, job
    assert headers["Location"] == f"/jobs/{job['job_id']}"
    assert job["state"] in {"queued", "running", "done"}
    assert job["total"] == 120

    done = await _finished(api, job)
    assert (done["processed"], done["succeeded"], done["failed"]) == (120, 3, 117)
    assert len(done["errors"]) == 100  # the first hundred failures are kept
    assert {error["result"] for error in done["errors"]} == {"image_not_found"}
    assert done["finished_at"] is not None
    for image_id in mine:
        assert (await _image(api, image_id))["tags"] == ["bulk"]

    # Someone else's job is nobody's.
    status, body, _ = await api.call("GET", f"/jobs/{job['job_id']}", user="bob")
    assert (status, body["error"]["code"]) == (404, "job_not_found")


async def test_by_tag_a_job_trashes_then_restores_every_tagged_image(api: Api) -> None:
    trip = await api.ready_images(4, tags=["trip"])
    kept = await api.ready_images(1, tags=["home"])
    status, job, _ = await _batch(api, {"op": "delete", "tag": "trip"})
    assert status == 202, job
    assert job["total"] is None  # counted as the tag's images are reached
    done = await _finished(api, job)
    assert (done["total"], done["succeeded"], done["failed"]) == (4, 4, 0)
    assert {(await _image(api, i))["status"] for i in trip} == {"trashed"}
    assert (await _image(api, kept[0]))["status"] == "ready"

    status, job, _ = await _batch(api, {"op": "restore", "tag": "trip"})  # from the trash
    done = await _finished(api, job)
    assert (done["succeeded"], done["failed"]) == (4, 0)
    assert {(await _image(api, i))["status"] for i in trip} == {"ready"}


async def test_a_keyed_retry_answers_the_same_and_another_body_is_refused(api: Api) -> None:
    mine = await api.ready_images(2)
    key = {"Idempotency-Key": "tidy-2026-12-07"}
    first = await _batch(api, {"op": "delete", "image_ids": mine}, headers=key)
    assert first[0] == 200
    assert (await _image(api, mine[0]))["status"] == "trashed"
    await api.call("POST", f"/images/{mine[0]}/restore")
    again = await _batch(api, {"op": "delete", "image_ids": mine}, headers=key)
    assert again[:2] == first[:2]  # the first answer, not a second delete
    assert (await _image(api, mine[0]))["status"] == "ready"

    status, body, _ = await _batch(api, {"op": "delete", "image_ids": mine[:1]}, headers=key)
    assert (status, body["error"]["code"]) == (422, "idempotency_key_reused")
    # Another user's same key is theirs alone.
    status, body, _ = await _batch(
        api, {"op": "delete", "image_ids": mine}, headers=key, user="bob"
    )
    assert [r["result"] for r in body["results"]] == ["image_not_found"] * 2

    many = [str(uuid.uuid4()) for _ in range(101)]
    key = {"Idempotency-Key": "a-job"}
    status, job, _ = await _batch(api, {"op": "restore", "image_ids": many}, headers=key)
    assert status == 202
    status, twin, _ = await _batch(api, {"op": "restore", "image_ids": many}, headers=key)
    assert (status, twin["job_id"]) == (202, job["job_id"])


async def test_each_owner_has_at_most_five_jobs_queued_or_running(make_api: MakeApi) -> None:
    api = await make_api(embedded_worker=False)  # nobody runs them: they stay queued
    many = [str(uuid.uuid4()) for _ in range(101)]
    for _ in range(5):
        status, job, _ = await _batch(api, {"op": "tag", "image_ids": many, "tags": ["x"]})
        assert (status, job["state"]) == (202, "queued")
    status, body, _ = await _batch(api, {"op": "tag", "image_ids": many, "tags": ["x"]})
    assert (status, body["error"]["code"]) == (409, "too_many_jobs")
    status, _, _ = await _batch(
        api, {"op": "tag", "image_ids": many, "tags": ["x"]}, user="bob"
    )  # another owner's bound is theirs
    assert status == 202


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (
            {"op": "paint", "image_ids": ["00000000-0000-4000-8000-000000000000"]},
            "validation_error",
        ),
        ({"op": "delete"}, "invalid_selection"),
        (
            {"op": "delete", "tag": "x", "image_ids": ["00000000-0000-4000-8000-000000000000"]},
            "invalid_selection",
        ),
        ({"op": "delete", "image_ids": ["not-an-id"]}, "validation_error"),
        ({"op": "delete", "image_ids": []}, "validation_error"),
        (
            {"op": "delete", "image_ids": [str(uuid.UUID(int=n)) for n in range(1001)]},
            "validation_error",
        ),
        (
            {"op": "delete", "image_ids": ["00000000-0000-4000-8000-000000000000"] * 2},
            "invalid_selection",
        ),
        ({"op": "tag", "image_ids": ["00000000-0000-4000-8000-000000000000"]}, "validation_error"),
        ({"op": "delete", "tag": "x", "tags": ["y"]}, "validation_error"),
        ({"op": "restore", "tag": "x", "permanent": True}, "validation_error"),
        ({"op": "set_focal", "tag": "x"}, "validation_error"),
        ({"op": "delete", "tag": "x", "focal": None}, "validation_error"),
        ({"op": "set_focal", "tag": "x", "focal": {"x": 2, "y": 0}}, "validation_error"),
        ({"op": "tag", "tag": "x\u0000", "tags": ["y"]}, "validation_error"),
    ],
)
async def test_a_malformed_batch_is_422(api: Api, body: dict[str, Any], code: str) -> None:
    status, payload, _ = await _batch(api, body)
    assert (status, payload["error"]["code"]) == (422, code)


async def test_a_malformed_idempotency_key_is_422(api: Api) -> None:
    status, payload, _ = await _batch(
        api,
        {"op": "delete", "image_ids": [str(uuid.uuid4())]},
        headers={"Idempotency-Key": "x" * 256},
    )
    assert (status, payload["error"]["code"]) == (422, "invalid_idempotency_key")


async def test_deleting_or_restoring_in_bulk_needs_the_delete_scope(api: Api) -> None:
    mine = await api.ready_images(1)
    status, made, _ = await api.call(
        "POST", "/api-keys", json={"name": "tagger", "scopes": ["images:write"]}
    )
    assert status == 201
    as_key = {"Authorization": f"Bearer {made['key']}"}
    for op in ("delete", "restore"):
        status, body, _ = await _batch(
            api, {"op": op, "image_ids": mine}, user=None, headers=as_key
        )
        assert (status, body["error"]["code"]) == (403, "missing_scope"), op
    assert (await _image(api, mine[0]))["status"] == "ready"
    status, body, _ = await _batch(
        api, {"op": "tag", "image_ids": mine, "tags": ["ok"]}, user=None, headers=as_key
    )
    assert (status, body["succeeded"]) == (200, 1)
