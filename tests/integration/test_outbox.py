"""The outbox, with real processes: an event is written in its change's own transaction, so a
process SIGKILLed between its commit and its send loses nothing (a worker's relay sends it);
and every replica's event streams hear every change, whichever replica made it, from the feed
the same transactions write."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from image_service.programs.embedded import free_port
from image_service.programs.faults import KILL_AFTER_COMMIT
from tests import images
from tests.integration.conftest import Api, MakeApi, auth
from tests.integration.receivers import DELIVERY_SECONDS, SECRET, Receiver, webhook_ids
from tests.integration.streams import sse_events
from tests.processes import Program, wait_for_port

# What docs/reliability.md states: a change on one replica reaches a stream on another within
# this long (the watch's 1 s poll, plus the feed index's lag, which moto does not have).
STREAM_BOUND_SECONDS = 3.0


async def _serve(api: Api, **settings: str) -> tuple[Program, str]:
    port = free_port()
    program = await Program.start("serve", env=api.child_environment(PORT=str(port), **settings))
    await wait_for_port(port, owner=program.process)
    return program, f"http://127.0.0.1:{port}"


async def test_an_api_killed_between_commit_and_send_loses_no_webhook(
    make_api: MakeApi, receiver: Receiver
) -> None:
    hooks = {"WEBHOOK_URL": receiver.url + "/hooks", "WEBHOOK_SECRET": SECRET}
    # The deployment's resources; its own process neither serves this test nor works jobs.
    api = await make_api(embedded_worker=False)
    worker = await Program.start("worker", env=api.child_environment(**hooks))
    doomed, url = await _serve(api, **hooks, TEST_FAULT=KILL_AFTER_COMMIT)
    try:
        upload = await api.upload_url(content_type="image/png")
        await api.send_to_s3(upload, images.HTML, **{"Content-Type": "image/png"})
        image_id = upload["image_id"]
        # Its completion refuses the bytes, commits the refusal with its event, and dies
        # before it can queue the event's webhook job.
        try:
            async with api.http.post(
                f"{url}/images/{image_id}/complete", headers=auth("alice")
            ) as response:
                raise AssertionError(f"the process answered: {response.status}")
        except aiohttp.ClientConnectionError:
            pass
        assert await doomed.wait(within=10) == -signal.SIGKILL
        status, image, _ = await api.call("GET", f"/images/{image_id}")
        assert (status, image["status"]) == (200, "rejected")  # committed before the kill

        # The worker's relay finds the job in the outbox and queues it; the worker delivers.
        (event,) = await receiver.until(1)
        assert (event["type"], event["data"]["image_id"]) == ("image.rejected", image_id)
        await asyncio.sleep(3)  # a second relay pass would have sent it again by now
        assert list(webhook_ids(receiver).values()) == [1]
    finally:
        await worker.stop()
        if doomed.process.returncode is None:
            await doomed.kill()


async def _stream(url: str, user: str = "alice") -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """(event type, data) from a replica's stream, as they come."""
    async with aiohttp.ClientSession() as http:
        async for event in sse_events(http, f"{url}/events", headers=auth(user)):
            yield event


async def test_a_stream_on_one_replica_hears_every_change_made_on_another(api: Api) -> None:
    listening, listening_url = await _serve(api)
    acting, acting_url = await _serve(api)
    try:
        stream = _stream(listening_url)
        first = asyncio.create_task(anext(stream))
        await asyncio.sleep(1)  # connected, and nothing happened yet

        async def act(method: str, path: str, **params: str) -> float:
            async with api.http.request(
                method, f"{acting_url}{path}", headers=auth("alice"), params=params
            ) as response:
                assert response.status < 300, await response.text()
            return time.monotonic()

        async def heard(image_id: str, wanted: str, since: float) -> dict[str, Any]:
            nonlocal first
            async with asyncio.timeout(DELIVERY_SECONDS):
                while True:
                    event, data = await (first if first is not None else anext(stream))
                    first = None
                    if data["image_id"] == image_id and event == wanted:
                        waited = time.monotonic() - since
                        assert waited <= STREAM_BOUND_SECONDS, (wanted, waited)
                        return data

        # Uploaded and completed through the acting replica, processed by the test's worker.
        upload = await api.upload_url()
        assert await api.send_to_s3(upload, images.jpeg()) == 200
        image_id = upload["image_id"]
        completed = await act("POST", f"/images/{image_id}/complete")
        await heard(image_id, "image.processing", completed)
        status, _, _ = await api.call("GET", f"/images/{image_id}", params={"wait": "ready"})
        assert status == 200
        assert (await heard(image_id, "image.ready", time.monotonic()))["status"] == "ready"

        trashed = await act("DELETE", f"/images/{image_id}")
        assert (await heard(image_id, "image.trashed", trashed))["status"] == "trashed"
        restored = await act("POST", f"/images/{image_id}/restore")
        assert (await heard(image_id, "image.restored", restored))["status"] == "ready"
        deleted = await act("DELETE", f"/images/{image_id}", permanent="true")
        await heard(image_id, "image.deleted", deleted)
        await stream.aclose()
    finally:
        await listening.stop()
        await acting.stop()
