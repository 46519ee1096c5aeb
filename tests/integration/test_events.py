"""Waiting without polling: `GET /images/{id}?wait=ready` and the `GET /events` stream, on one
process and across two (no shared state: what the other process does is seen in DynamoDB)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from tests import images
from tests.integration.conftest import Api, MakeApi, auth, token
from tests.integration.streams import sse_events

EVENT_SECONDS = 30


async def _events(api: Api, user: str = "alice", **params: str) -> AsyncIterator[tuple[str, Any]]:
    """(event type, data) from the stream, as they come."""
    headers = {} if "access_token" in params else auth(user)
    async for event in sse_events(api.http, f"{api.url}/events", headers=headers, params=params):
        yield event


async def _next_event(stream: AsyncIterator[tuple[str, Any]], image_id: str) -> tuple[str, Any]:
    async with asyncio.timeout(EVENT_SECONDS):
        async for event, data in stream:
            if data["image_id"] == image_id:
                return event, data
    raise AssertionError("the stream ended")


async def _uploaded(api: Api, data: bytes, **body: Any) -> str:
    """Upload URL, PUT and complete: the image is processing; its id."""
    upload = await api.upload_url(**body)
    assert await api.send_to_s3(upload, data) == 200
    status, image, _ = await api.call("POST", f"/images/{upload['image_id']}/complete")
    assert status == 200, image
    return str(upload["image_id"])


async def test_wait_ready_answers_once_processed_in_one_request(api: Api) -> None:
    image_id = await _uploaded(api, images.jpeg(640, 480))
    status, image, _ = await api.call("GET", f"/images/{image_id}", params={"wait": "ready"})
    assert (status, image["status"]) == (200, "ready")  # one request, held until then
    assert image["variants"]


async def test_wait_ready_gives_up_after_its_timeout_and_answers_as_it_is(api: Api) -> None:
    upload = await api.upload_url()  # never uploaded: pending for good
    started = asyncio.get_running_loop().time()
    status, image, _ = await api.call(
        "GET", f"/images/{upload['image_id']}", params={"wait": "ready", "timeout": "1"}
    )
    assert (status, image["status"]) == (200, "pending")
    assert asyncio.get_running_loop().time() - started >= 1


async def test_a_wait_longer_than_the_request_deadline_is_held_all_the_way(
    make_api: MakeApi,
) -> None:
    # The request deadline, shortened to 1 s (its subject here): a wait of 3 s outlives it.
    api = await make_api(request_timeout_seconds=1)
    upload = await api.upload_url()
    status, image, _ = await api.call(
        "GET", f"/images/{upload['image_id']}", params={"wait": "ready", "timeout": "3"}
    )
    assert (status, image["status"]) == (200, "pending")


async def test_wait_and_events_see_what_another_replica_did(make_api: MakeApi) -> None:
    processing = await make_api()  # with the worker
    # A second replica of the same deployment, with no worker.
    other = await make_api(replica_of=processing, embedded_worker=False)
    stream = _events(other)
    first = asyncio.create_task(anext(stream))  # connects; nothing happens yet
    await asyncio.sleep(0.5)
    image_id = await _uploaded(processing, images.png(), content_type="image/png")
    status, image, _ = await other.call("GET", f"/images/{image_id}", params={"wait": "ready"})
    assert (status, image["status"]) == (200, "ready")
    async with asyncio.timeout(EVENT_SECONDS):
        event, data = await first
    while data["image_id"] != image_id or event != "image.ready":
        event, data = await _next_event(stream, image_id)
    assert data["status"] == "ready"
    await stream.aclose()


async def test_the_stream_carries_the_callers_own_events_only(api: Api) -> None:
    mine = _events(api, access_token=token("alice"))  # as a browser's EventSource sends it
    theirs = _events(api, user="bob")
    mine_first = asyncio.create_task(anext(mine))
    theirs_first = asyncio.create_task(anext(theirs))
    await asyncio.sleep(0.5)
    alice_image = await _uploaded(api, images.jpeg())
    event, data = await asyncio.wait_for(mine_first, EVENT_SECONDS)
    while event != "image.ready":
        event, data = await _next_event(mine, alice_image)
    assert data["image_id"] == alice_image
    # A new focal point changes its rendition URLs: a page that shows them hears it.
    focal = {"x": 0.25, "y": 0.5}
    await api.call("PATCH", f"/images/{alice_image}", json={"focal": focal})
    event, data = await _next_event(mine, alice_image)
    assert (event, data["focal"]) == ("image.updated", focal)
    await api.call("DELETE", f"/images/{alice_image}")
    assert (await _next_event(mine, alice_image))[0] == "image.trashed"
    await api.call("POST", f"/images/{alice_image}/restore")
    assert (await _next_event(mine, alice_image))[0] == "image.restored"
    await api.call("DELETE", f"/images/{alice_image}", params={"permanent": "true"})
    assert (await _next_event(mine, alice_image))[0] == "image.deleted"
    await asyncio.sleep(0.5)
    assert not theirs_first.done()  # bob heard nothing of alice's images
    theirs_first.cancel()
    await mine.aclose()


async def test_held_requests_are_bounded_per_process(make_api: MakeApi) -> None:
    # The bound, lowered to 2 (its subject here): the third held request is refused at once.
    api = await make_api(max_held_waits=2)
    pending = [await api.upload_url() for _ in range(3)]
    held = [
        asyncio.create_task(
            api.call("GET", f"/images/{u['image_id']}", params={"wait": "ready", "timeout": "2"})
        )
        for u in pending[:2]
    ]
    await asyncio.sleep(0.5)
    status, error, headers = await api.call(
        "GET", f"/images/{pending[2]['image_id']}", params={"wait": "ready", "timeout": "5"}
    )
    assert (status, error["error"]["code"], headers["Retry-After"]) == (503, "too_many_waits", "1")
    # Without wait, nothing is held: answered at once.
    status, _, _ = await api.call("GET", f"/images/{pending[2]['image_id']}")
    assert status == 200
    for task in held:
        assert (await task)[0] == 200


async def test_wait_and_events_refuse_bad_input(api: Api) -> None:
    upload = await api.upload_url()
    for params in ({"wait": "done"}, {"wait": "ready", "timeout": "21"}, {"timeout": "-1"}):
        status, error, _ = await api.call("GET", f"/images/{upload['image_id']}", params=params)
        assert (status, error["error"]["code"]) == (422, "validation_error"), params
    async with api.http.get(f"{api.url}/events", params={"access_token": "not a token"}) as r:
        assert r.status == 401
    async with api.http.get(f"{api.url}/events") as response:
        assert response.status == 401
