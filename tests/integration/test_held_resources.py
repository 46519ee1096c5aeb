"""What a request holds while it runs has a bound per user as well as per process: one user at
their bound gets a 429 with Retry-After, and every other user is served as before. Waits and
streams, renders, completions (each spools its upload) and open multipart uploads, all on
their production bounds."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from image_service.domain.models import MIN_PART_BYTES
from image_service.web.keys import WATCHER
from tests import images
from tests.faults import FaultProxy, s3
from tests.integration.conftest import Api, MakeApi, token
from tests.waiting import until


async def _refused(api: Api, method: str, path: str, code: str, **kwargs: Any) -> None:
    status, body, headers = await api.call(method, path, **kwargs)
    assert (status, body["error"]["code"]) == (429, code), body
    assert headers["Retry-After"] == "1"
    assert body["error"]["details"]["per_user_limit"] > 0


@contextlib.asynccontextmanager
async def _stream(api: Api, user: str, ttl: int = 600) -> AsyncIterator[aiohttp.ClientResponse]:
    async with api.http.get(
        f"{api.url}/events", headers={"Authorization": f"Bearer {token(user, ttl=ttl)}"}
    ) as response:
        yield response


async def test_waits_and_streams_are_bounded_per_user(api: Api) -> None:
    per_user = api.settings.max_held_waits_per_user
    pending = await api.upload_url()
    wait = {"wait": "ready", "timeout": "20"}
    path = f"/images/{pending['image_id']}"
    async with contextlib.AsyncExitStack() as held:
        for _ in range(per_user // 2):  # half streams...
            response = await held.enter_async_context(_stream(api, "alice"))
            assert response.status == 200
        waits = [  # ...half waits
            asyncio.create_task(api.call("GET", path, params=wait))
            for _ in range(per_user - per_user // 2)
        ]
        watcher = api.client.app[WATCHER]
        await until(
            lambda: not (watcher.held < per_user), within=10
        )  # every wait has reached the watcher
        await _refused(api, "GET", path, "too_many_held_waits", params=wait)
        async with _stream(api, "alice") as refused:
            assert refused.status == 429
            assert (await refused.json())["error"]["code"] == "too_many_held_waits"
        # Bob is served as if alice were not there: a wait of his, and a stream.
        bobs = await api.upload_url("bob")
        status, image, _ = await api.call(
            "GET",
            f"/images/{bobs['image_id']}",
            user="bob",
            params={"wait": "ready", "timeout": "1"},
        )
        assert (status, image["status"]) == (200, "pending")
        async with _stream(api, "bob") as theirs:
            assert theirs.status == 200
        for task in waits:
            task.cancel()
    # Alice's holds went with their requests.
    status, _, _ = await api.call("GET", path, params={"wait": "ready", "timeout": "1"})
    assert status == 200


async def test_a_stream_ends_when_the_token_that_opened_it_expires(api: Api) -> None:
    async with _stream(api, "alice", ttl=2) as response:
        assert response.status == 200
        async with asyncio.timeout(10):
            lines = [line.decode().strip() async for line in response.content]
    events = [
        (lines[n].removeprefix("event: "), lines[n + 1].removeprefix("data: "))
        for n in range(len(lines) - 1)
        if lines[n].startswith("event: ")
    ]
    assert events[-1][0] == "end"
    assert json.loads(events[-1][1]) == {"reason": "token_expired"}


async def test_renders_are_bounded_per_user(make_api: MakeApi, moto_endpoint: str) -> None:
    api = await make_api()
    _, _, alices = await api.upload(images.jpeg(320, 240))
    _, _, bobs = await api.upload(images.jpeg(320, 240), user="bob")
    async with FaultProxy(moto_endpoint) as proxy:
        replica = await make_api(
            replica_of=api,
            embedded_worker=False,
            environment={"AWS_ENDPOINT_URL_S3": proxy.url},
        )
        held = proxy.hold(s3("GET", f"/images/alice/{alices['image_id']}/original"))

        async def url(user: str, image_id: str, width: int) -> str:
            _, body, _ = await replica.call(
                "GET", f"/images/{image_id}/render", user=user, params={"w": str(width)}
            )
            return str(body["url"])

        per_user = replica.settings.max_renders_per_user
        widths = replica.settings.render_widths
        mine = [await url("alice", alices["image_id"], w) for w in widths[: per_user + 1]]
        rendering = [asyncio.create_task(replica.http.get(u)) for u in mine[:per_user]]
        await held.wait_for_hits(per_user)
        async with replica.http.get(mine[per_user]) as refused:
            assert refused.status == 429
            assert refused.headers["Retry-After"] == "1"
            assert (await refused.json())["error"]["code"] == "too_many_renders"
        async with replica.http.get(await url("bob", bobs["image_id"], widths[0])) as theirs:
            assert theirs.status == 200
        held.release()
        for task in rendering:
            async with await task as response:
                assert response.status == 200


async def test_completions_are_bounded_per_user_and_share_the_slots(
    make_api: MakeApi, moto_endpoint: str
) -> None:
    """Each completion reads its upload into a temporary file in one of the process's few
    slots: one user gets at most their share of the slots and a few completions at once."""
    api = await make_api()
    per_user = api.settings.max_completions_per_user
    uploads = [await api.upload_url() for _ in range(per_user + 1)]
    for upload in uploads:
        assert await api.send_to_s3(upload, images.jpeg(64, 48)) == 200
    bobs = await api.upload_url("bob")
    assert await api.send_to_s3(bobs, images.jpeg(64, 48)) == 200
    async with FaultProxy(moto_endpoint) as proxy:
        replica = await make_api(
            replica_of=api,
            embedded_worker=False,
            environment={"AWS_ENDPOINT_URL_S3": proxy.url},
        )
        held = proxy.hold(s3("GET", "/incoming/alice/"))
        completing = [
            asyncio.create_task(replica.call("POST", f"/images/{u['image_id']}/complete"))
            for u in uploads[:per_user]
        ]
        await held.wait_for_hits(1)
        await asyncio.sleep(0.2)  # the others reach their own queue
        assert held.hits == 1  # alice holds one slot of two, whatever she sends
        await _refused(
            replica,
            "POST",
            f"/images/{uploads[per_user]['image_id']}/complete",
            "too_many_completions",
        )
        status, image, _ = await replica.call(
            "POST", f"/images/{bobs['image_id']}/complete", user="bob"
        )
        assert (status, image["status"]) == (200, "processing")
        held.release()
        for task in completing:
            assert (await task)[0] == 200


async def test_open_multipart_uploads_are_bounded_and_counted(make_api: MakeApi) -> None:
    api = await make_api()
    per_user = api.settings.max_open_multipart_per_user
    size = MIN_PART_BYTES + 1
    for _ in range(per_user):
        await api.upload_url(method="MULTIPART", size=size)
    await _refused(
        api,
        "POST",
        "/images/upload",
        "too_many_multipart_uploads",
        json={"content_type": "image/jpeg", "method": "MULTIPART", "size": size},
    )
    assert (await api.upload_url("bob", method="MULTIPART", size=size))["method"] == "MULTIPART"


async def test_open_multipart_uploads_count_against_the_byte_quota(make_api: MakeApi) -> None:
    # A test about IMAGE_SERVICE_MAX_BYTES_PER_USER: room for one such upload, not two.
    size = 600 * 1024 * 1024
    api = await make_api(max_bytes_per_user=1024 * 1024 * 1024)
    await api.upload_url(method="MULTIPART", size=size)
    status, body, _ = await api.call(
        "POST",
        "/images/upload",
        json={"content_type": "image/jpeg", "method": "MULTIPART", "size": size},
    )
    assert body["error"]["code"] == "quota_exceeded", (status, body)
    assert body["error"]["details"]["pending_multipart_bytes"] == size
    assert (await api.upload_url("bob", method="MULTIPART", size=size))["method"] == "MULTIPART"
