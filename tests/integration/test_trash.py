"""The trash: a DELETE is undoable for IMAGE_SERVICE_TRASH_DAYS, then the sweeper purges it;
`?permanent=true` and emptying the trash purge at once; a restore racing a purge wins or loses
whole."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from tests import images
from tests.integration.conftest import Api, MakeApi
from tests.processes import run_command

# The table's behaviour, under both transports (IMAGE_SERVICE_AWS_TRANSPORT): every test here
# that makes an API runs once on each.
BOTH_TRANSPORTS = True

PERMANENT = {"permanent": "true"}


async def _ready(api: Api, color: tuple[int, int, int] = (10, 20, 30), **body: str) -> str:
    upload, status, image = await api.upload(
        images.encode("PNG", 32, 24, color), content_type="image/png", **body
    )
    assert (status, image["status"]) == (200, "ready"), image
    return str(upload["image_id"])


async def test_a_trashed_image_is_kept_but_never_served_nor_listed(api: Api) -> None:
    data = images.encode("PNG", 32, 24, (1, 2, 3))
    upload, _, ready = await api.upload(data, content_type="image/png", tags=["sea"])
    image_id = upload["image_id"]
    objects = api.object_keys()
    status, render, _ = await api.call("GET", f"/images/{image_id}/render", params={"w": "256"})
    assert status == 200

    assert (await api.call("DELETE", f"/images/{image_id}"))[0] == 204
    assert api.object_keys() == objects  # nothing is removed yet
    status, image, _ = await api.call("GET", f"/images/{image_id}")
    assert (status, image["status"]) == (200, "trashed")
    for path in (f"/images/{image_id}/download", f"/images/{image_id}/render?w=256"):
        status, body, _ = await api.call("GET", path)
        assert (status, body["error"]["code"]) == (409, "image_not_ready"), path
    async with api.http.get(render["url"]) as response:  # a URL signed before the delete
        # The URL is no credential of the owner's: which state hides the image is not said.
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "image_not_found"
    for query in ({}, {"tag": "sea"}, {"status": "ready"}):
        assert (await api.call("GET", "/images", params=query))[1]["items"] == [], query
    _, owned, _ = await api.call(
        "POST", "/images/check", json={"checksums_sha256": [ready["sha256"]]}
    )
    assert owned["results"][0]["image_id"] is None
    _, trash, _ = await api.call("GET", "/images", params={"status": "trashed"})
    assert [item["image_id"] for item in trash["items"]] == [image_id]

    assert (await api.call("DELETE", f"/images/{image_id}"))[0] == 204  # again: still trashed
    status, restored, _ = await api.call("POST", f"/images/{image_id}/restore")
    assert (status, restored["status"], restored["tags"]) == (200, "ready", ["sea"])
    _, page, _ = await api.call("GET", "/images", params={"tag": "sea"})
    assert [item["image_id"] for item in page["items"]] == [image_id]
    status, body, _ = await api.call("POST", f"/images/{image_id}/restore")
    assert (status, body["error"]["code"]) == (409, "not_in_trash")


async def test_permanent_deletes_and_an_upload_never_completed_go_at_once(api: Api) -> None:
    image_id = await _ready(api)
    assert (await api.call("DELETE", f"/images/{image_id}", params=PERMANENT))[0] == 204
    assert (await api.call("GET", f"/images/{image_id}"))[0] == 404
    pending = await api.upload_url()
    assert (await api.call("DELETE", f"/images/{pending['image_id']}"))[0] == 204
    assert (await api.call("GET", f"/images/{pending['image_id']}"))[0] == 404
    status, body, _ = await api.call("POST", f"/images/{image_id}/restore")
    assert (status, body["error"]["code"]) == (404, "image_not_found")


async def test_with_no_trash_a_delete_deletes_at_once(make_api: MakeApi) -> None:
    api = await make_api(trash_days=0)  # this test's subject: IMAGE_SERVICE_TRASH_DAYS=0
    image_id = await _ready(api)
    assert (await api.call("DELETE", f"/images/{image_id}"))[0] == 204
    assert api.object_keys() == []
    assert (await api.call("GET", f"/images/{image_id}"))[0] == 404


async def test_emptying_the_trash_purges_only_the_callers_trash(api: Api) -> None:
    mine = [await _ready(api, (n, 0, 0)) for n in range(3)]
    theirs = await _ready(api, (0, 0, 9), user="bob")
    kept = await _ready(api, (9, 9, 9))
    for image_id in mine:
        await api.call("DELETE", f"/images/{image_id}")
    await api.call("DELETE", f"/images/{theirs}", user="bob")
    status, body, _ = await api.call("DELETE", "/trash")
    assert (status, body) == (200, {"purged": 3})
    assert all([(await api.call("GET", f"/images/{i}"))[0] == 404 for i in mine])
    assert (await api.call("GET", f"/images/{kept}"))[1]["status"] == "ready"
    assert (await api.call("GET", f"/images/{theirs}", user="bob"))[1]["status"] == "trashed"
    assert not [key for key in api.object_keys() if any(i in key for i in mine)]


async def test_the_sweeper_purges_what_has_been_in_the_trash_long_enough(api: Api) -> None:
    old, recent = await _ready(api, (1, 1, 1)), await _ready(api, (2, 2, 2))
    api.clock.pinned = datetime.now(UTC) - timedelta(days=api.settings.trash_days, minutes=1)
    await api.call("DELETE", f"/images/{old}")  # trashed just over 30 days ago
    api.clock.pinned = None
    await api.call("DELETE", f"/images/{recent}")
    code, out, err = await run_command("sweep", env=api.child_environment())
    assert code == 0, err
    assert "1 purged from the trash" in out
    assert (await api.call("GET", f"/images/{old}"))[0] == 404
    assert (await api.call("GET", f"/images/{recent}"))[1]["status"] == "trashed"
    assert not [key for key in api.object_keys() if old in key]


async def test_a_restore_racing_a_purge_wins_or_loses_whole(api: Api) -> None:
    ids = [await _ready(api, (n * 20, 0, 0)) for n in range(8)]
    objects = {i: sorted(k for k in api.object_keys() if i in k) for i in ids}
    for image_id in ids:
        await api.call("DELETE", f"/images/{image_id}")
    results = await asyncio.gather(
        api.call("DELETE", "/trash"),
        *(api.call("POST", f"/images/{image_id}/restore") for image_id in ids),
    )
    purged = results[0][1]["purged"]
    restored = [i for i, (status, _, _) in zip(ids, results[1:], strict=True) if status == 200]
    assert purged + len(restored) == len(ids)
    for image_id in ids:
        status, image, _ = await api.call("GET", f"/images/{image_id}")
        stored = sorted(k for k in api.object_keys() if image_id in k)
        if image_id in restored:
            assert (status, image["status"], stored) == (200, "ready", objects[image_id])
        else:  # purged: record and every object gone
            assert (status, stored) == (404, [])
