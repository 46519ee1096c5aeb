"""The service read as an attacker reads it: every state that hides an image against every way
to its bytes, renditions across replicas and racing deletes, completion of what is no longer
pending, and the small holes one request wide (docs/security.md, "Threat model")."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from image_service.domain.models import ImageStatus
from image_service.web.keys import IMAGE_REPOSITORY
from tests import images
from tests.faults import FaultProxy, s3
from tests.integration.conftest import Api, MakeApi


async def _ready(api: Api, data: bytes | None = None, **body: Any) -> dict[str, Any]:
    _, status, image = await api.upload(data or images.jpeg(320, 240), **body)
    assert status == 200
    assert image["status"] == "ready", image
    return image  # type: ignore[no-any-return]


async def _rendition_url(api: Api, image_id: str, query: str = "w=256") -> str:
    status, body, _ = await api.call("GET", f"/images/{image_id}/render?{query}")
    assert status == 200, body
    return str(body["url"])


async def _fetch(api: Api, url: str) -> tuple[int, bytes]:
    async with api.http.get(url) as response:
        return response.status, await response.read()


async def _replica(make_api: MakeApi, api: Api, **overrides: Any) -> Api:
    """Another replica of ``api``'s deployment, with no worker of its own."""
    return await make_api(replica_of=api, embedded_worker=False, **overrides)


def _on(api: Api, url: str) -> str:
    """A rendition URL of one replica, sent to another (a load balancer would)."""
    return api.url + url[url.index("/r/") :]


# -- renditions: served only while the image is ready, on every replica, at once ----------------


async def test_a_trashed_images_rendition_urls_stop_at_once_on_every_replica(
    make_api: MakeApi,
) -> None:
    first = await make_api()
    second = await _replica(make_api, first)
    image = await _ready(first)
    url = await _rendition_url(first, image["image_id"])
    for api in (first, second):  # both hold it in memory now
        for _ in range(2):
            assert (await _fetch(api, _on(api, url)))[0] == 200

    assert (await first.call("DELETE", f"/images/{image['image_id']}"))[0] == 204
    for api in (first, second):
        status, body = await _fetch(api, _on(api, url))
        assert status == 404, body
        # Revalidation too: a cache's If-None-Match is no way around the state.
        async with api.http.get(_on(api, url), headers={"If-None-Match": '"x"'}) as response:
            assert response.status == 404

    assert (await second.call("POST", f"/images/{image['image_id']}/restore"))[0] == 200
    assert (await _fetch(first, url))[0] == 200


async def test_a_rendition_is_cached_no_longer_than_a_trash_may_take_to_reach_caches(
    api: Api,
) -> None:
    image = await _ready(api)
    async with api.http.get(await _rendition_url(api, image["image_id"])) as response:
        assert response.status == 200
        directives = response.headers["Cache-Control"].split(", ")
    # What the URL names never changes (its edition is in it): no revalidation while fresh,
    # but fresh no longer than a trash may take to reach the caches.
    assert "immutable" in directives
    (max_age,) = [d for d in directives if d.startswith("max-age=")]
    assert 0 < int(max_age.removeprefix("max-age=")) <= api.settings.rendition_max_age_seconds


async def test_a_render_that_outlives_a_permanent_delete_leaves_nothing_behind(
    make_api: MakeApi, moto_endpoint: str
) -> None:
    """The delete lists the image's keys while the render is running; the render stores its
    output after that. The output is removed, and nothing is served."""
    api = await make_api()
    image = await _ready(api)
    image_id = image["image_id"]
    async with FaultProxy(moto_endpoint) as proxy:
        renderer = await _replica(make_api, api, environment={"AWS_ENDPOINT_URL_S3": proxy.url})
        url = _on(renderer, await _rendition_url(api, image_id, "w=128&format=webp"))
        stored = proxy.hold(s3("PUT", "/r/"))
        delivery = asyncio.create_task(_fetch(renderer, url))
        await stored.wait_for_hits(1)  # rendered; its PUT is on the wire
        status, _, _ = await api.call("DELETE", f"/images/{image_id}", params={"permanent": "true"})
        assert status == 204
        assert api.object_keys() == []
        stored.release()
        status, _ = await delivery
    assert status == 404
    assert api.object_keys() == []


# -- every state that hides an image, against every way to its bytes -----------------------------

HIDING = (
    ImageStatus.TRASHED,
    ImageStatus.QUARANTINED,
    ImageStatus.DELETING,
    ImageStatus.REJECTED,
    "deleted",
)


async def _hide(api: Api, image_id: str, state: ImageStatus | str) -> None:
    """Puts a ready image into ``state`` the way the service's own writes do (the trash and
    the permanent delete through the API; the others as the pipeline, an interrupted delete,
    or a rejection store them)."""
    if state is ImageStatus.TRASHED:
        assert (await api.call("DELETE", f"/images/{image_id}"))[0] == 204
        return
    if state == "deleted":
        status, _, _ = await api.call("DELETE", f"/images/{image_id}", params={"permanent": "true"})
        assert status == 204
        return
    assert isinstance(state, ImageStatus)
    repository = api.client.app[IMAGE_REPOSITORY]
    record = await repository.get("alice", image_id)
    assert record is not None
    changed = replace(record, status=state, updated_at=datetime.now(UTC))
    assert await repository.replace_if_status(changed, ImageStatus.READY)


@pytest.mark.parametrize("state", HIDING, ids=str)
async def test_no_way_reaches_the_bytes_of_a_hidden_image(
    make_api: MakeApi, state: ImageStatus | str
) -> None:
    api = await make_api()
    other_replica = await _replica(make_api, api)
    image = await _ready(api)
    image_id = image["image_id"]
    variant = image["variants"][0]["name"]
    cached = await _rendition_url(api, image_id, "w=256")
    assert (await _fetch(api, cached))[0] == 200
    assert (await _fetch(other_replica, _on(other_replica, cached)))[0] == 200
    fresh = await _rendition_url(api, image_id, "w=128&format=jpeg")  # signed, never rendered
    original = api.s3.get_object(
        Bucket=api.settings.bucket, Key=f"images/alice/{image_id}/original"
    )
    original_etag = original["ETag"]

    await _hide(api, image_id, state)

    ways = {
        "download": ("GET", f"/images/{image_id}/download", {}),
        "download redirect": ("GET", f"/images/{image_id}/download", {"redirect": "true"}),
        "variant": ("GET", f"/images/{image_id}/download", {"variant": variant}),
        "rendition URL": ("GET", f"/images/{image_id}/render", {"w": "256"}),
        "parts": ("GET", f"/images/{image_id}/parts", {}),
    }
    for way, (method, path, params) in ways.items():
        status, body, headers = await api.call(method, path, params=params, allow_redirects=False)
        assert status in {404, 409}, (way, status, body)
        assert "Location" not in headers, way
        assert "url" not in str(body).lower() or "_url" not in str(body), (way, body)
    for replica, url in ((api, cached), (other_replica, _on(other_replica, cached)), (api, fresh)):
        status, data = await _fetch(replica, url)
        assert status == 404, (url, data[:100])

    # Completion neither serves nor revives it: no bytes, no change of state.
    status, body, _ = await api.call("POST", f"/images/{image_id}/complete")
    assert "download_url" not in (body or {})
    _, now, _ = await api.call("GET", f"/images/{image_id}")
    if state == "deleted":
        assert status == 404
    else:
        assert status in {200, 404, 409, 422}, body
        assert now["status"] == (state.value if isinstance(state, ImageStatus) else state)
    if state in {ImageStatus.TRASHED, ImageStatus.QUARANTINED}:
        # Kept for a restore (or an operator): kept as it was.
        kept = api.s3.head_object(
            Bucket=api.settings.bucket, Key=f"images/alice/{image_id}/original"
        )
        assert kept["ETag"] == original_etag


# -- completion: only a pending upload -----------------------------------------------------------


async def test_a_live_upload_url_cannot_replace_or_revive_a_trashed_image(api: Api) -> None:
    """The original API's curl flow signs no If-None-Match: its URL takes a second PUT while it
    lives. Completing that (or S3's event for it) must not overwrite the trashed original,
    take the image out of the trash, or count it twice."""
    first = images.jpeg(64, 48)
    upload = await api.upload_url()  # no size: the curl flow
    assert await api.send_to_s3(upload, first) == 200
    image_id = upload["image_id"]
    assert (await api.call("POST", f"/images/{image_id}/complete"))[0] == 200
    assert (await api.processed(image_id))["status"] == "ready"
    key = f"images/alice/{image_id}/original"
    kept = api.s3.head_object(Bucket=api.settings.bucket, Key=key)["ETag"]
    usage = await api.client.app[IMAGE_REPOSITORY].usage("alice")
    assert (await api.call("DELETE", f"/images/{image_id}"))[0] == 204

    assert await api.send_to_s3(upload, images.png()) == 200  # the URL still lives
    status, body, _ = await api.call("POST", f"/images/{image_id}/complete")
    assert (status, body["error"]["code"]) == (409, "image_trashed")
    assert api.s3.head_object(Bucket=api.settings.bucket, Key=key)["ETag"] == kept
    assert f"incoming/alice/{image_id}" not in api.object_keys()  # what arrived is gone
    assert await api.client.app[IMAGE_REPOSITORY].usage("alice") == usage
    _, image, _ = await api.call("GET", f"/images/{image_id}")
    assert image["status"] == "trashed"

    restored = await api.call("POST", f"/images/{image_id}/restore")
    assert (restored[0], restored[1]["status"]) == (200, "ready")
    assert await api.send_to_s3(upload, images.png()) == 200
    status, body, _ = await api.call("POST", f"/images/{image_id}/complete")
    assert (status, body["status"]) == (200, "ready")  # as it is: nothing re-verified
    assert api.s3.head_object(Bucket=api.settings.bucket, Key=key)["ETag"] == kept
    assert f"incoming/alice/{image_id}" not in api.object_keys()


# -- smaller holes -------------------------------------------------------------------------------


async def test_a_preset_takes_only_an_allowed_quality(api: Api) -> None:
    image = await _ready(api)
    status, body, _ = await api.call(
        "GET", f"/images/{image['image_id']}/render", params={"preset": "avatar", "q": "37"}
    )
    assert (status, body["error"]["code"]) == (422, "rendition_not_allowed")
    assert "q" in body["error"]["details"]["fields"]
    allowed = str(api.settings.render_qualities[0])
    status, _, _ = await api.call(
        "GET", f"/images/{image['image_id']}/render", params={"preset": "avatar", "q": allowed}
    )
    assert status == 200


async def test_an_admin_gets_no_original_that_may_carry_its_owners_location(api: Api) -> None:
    """GPS is removed from JPEG originals only; any other original may keep it."""
    png = await _ready(api, images.png(), content_type="image/png")
    jpeg = await _ready(api)
    path = f"/images/{png['image_id']}/download"
    admin = {"user": "root", "admin": True, "params": {"user_id": "alice"}}
    status, body, _ = await api.call("GET", path, **admin)
    assert (status, body["error"]["code"]) == (403, "original_owner_only")
    variant = png["variants"][0]["name"]
    as_admin = {**admin, "params": {"user_id": "alice", "variant": variant}}
    assert (await api.call("GET", path, **as_admin))[0] == 200
    assert (await api.call("GET", path))[0] == 200  # its owner
    jpeg_path = f"/images/{jpeg['image_id']}/download"
    assert (await api.call("GET", jpeg_path, **admin))[0] == 200  # stripped of its GPS


async def test_the_docs_page_cannot_be_framed_and_runs_only_its_own_scripts(api: Api) -> None:
    async with api.http.get(api.url + "/docs") as response:
        assert response.status == 200
        policy = response.headers["Content-Security-Policy"]
        assert response.headers["X-Frame-Options"] == "DENY"
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["frame-ancestors"] == "'none'"
    assert directives["default-src"] == "'none'"
    assert "'unsafe-inline'" not in directives["script-src"]
    assert "'sha256-" in directives["script-src"]  # the page's one inline start-up script
    status, _, headers = await api.call("GET", "/images")
    assert status == 200
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]


# -- credentials rotate under traffic ------------------------------------------------------------


async def test_the_rendition_key_rotates_under_traffic(make_api: MakeApi) -> None:
    """Replicas on the old key, then on the new key with the old as previous, then on the new
    alone: URLs signed either way are served while both are in use, then only the new."""
    old_key, new_key = "r" * 32, "s" * 32
    old = await make_api(render_secret=old_key)
    image = await _ready(old)
    old_url = await _rendition_url(old, image["image_id"])
    rotating = await _replica(make_api, old, render_secret=new_key, render_previous_secret=old_key)
    new_url = await _rendition_url(rotating, image["image_id"])
    assert new_url.rsplit("/", 1)[1] != old_url.rsplit("/", 1)[1]
    fetched = await asyncio.gather(
        *(
            _fetch(api, _on(api, url))
            for _ in range(5)
            for api in (old, rotating)
            for url in (old_url, new_url)
        )
    )
    # Each round: the old replica serves the old URL only; the rotating one, both.
    assert [status for status, _ in fetched] == [200, 403, 200, 200] * 5
    rotated = await _replica(make_api, old, render_secret=new_key)
    assert (await _fetch(rotated, _on(rotated, new_url)))[0] == 200
    assert (await _fetch(rotated, _on(rotated, old_url)))[0] == 403


async def test_s3s_event_for_a_late_upload_neither_replaces_nor_revives_a_trashed_image(
    make_api: MakeApi,
) -> None:
    """The same replay, completed by S3's own notification through the worker."""
    api = await make_api(s3_event_notifications=True)
    upload = await api.upload_url()  # the curl flow: the URL takes a second PUT
    assert await api.send_to_s3(upload, images.jpeg(64, 48)) == 200
    image_id = upload["image_id"]
    assert (await api.processed(image_id))["status"] == "ready"
    key = f"images/alice/{image_id}/original"
    kept = api.s3.head_object(Bucket=api.settings.bucket, Key=key)["ETag"]
    usage = await api.client.app[IMAGE_REPOSITORY].usage("alice")
    assert (await api.call("DELETE", f"/images/{image_id}"))[0] == 204

    assert await api.send_to_s3(upload, images.png()) == 200
    incoming = f"incoming/alice/{image_id}"
    async with asyncio.timeout(30):  # the event's job: the late upload is removed unread
        while True:
            if incoming not in api.object_keys():
                break
            await asyncio.sleep(0.1)
    assert api.s3.head_object(Bucket=api.settings.bucket, Key=key)["ETag"] == kept
    assert await api.client.app[IMAGE_REPOSITORY].usage("alice") == usage
    _, image, _ = await api.call("GET", f"/images/{image_id}")
    assert image["status"] == "trashed"
