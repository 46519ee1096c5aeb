"""Albums through HTTP against moto: made, listed, renamed, covered and deleted (their images
stay); up to 100 images added or removed per call with a result for each; paged like every
listing; a trashed image leaves the album's pages until restored, a purged one leaves the album
in the transaction that deletes it; another user's albums and images are out of reach."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.integration.conftest import Api, emulator_client

MISSING_IMAGE = "0b5c8f3e-7d2a-4f61-9a1e-2c4b6d8e0f13"


async def _album(api: Api, user: str = "alice", **body: Any) -> dict[str, Any]:
    status, album, _ = await api.call(
        "POST", "/albums", user=user, json={"name": "Holiday", **body}
    )
    assert status == 201, album
    return album  # type: ignore[no-any-return]


async def _add(api: Api, album_id: str, ids: list[str], user: str = "alice") -> dict[str, str]:
    status, body, _ = await api.call(
        "PUT", f"/albums/{album_id}/images", user=user, json={"image_ids": ids}
    )
    assert status == 200, body
    return body["results"]  # type: ignore[no-any-return]


async def _shown(api: Api, album_id: str, user: str = "alice", **params: str) -> list[str]:
    """Every image the album's pages show, page after page."""
    shown: list[str] = []
    cursor = None
    while True:
        query = dict(params) | ({"cursor": cursor} if cursor else {})
        status, page, _ = await api.call("GET", f"/albums/{album_id}", user=user, params=query)
        assert status == 200, page
        shown += [image["image_id"] for image in page["images"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return shown


async def test_an_album_is_made_filled_paged_and_deleted_leaving_its_images(api: Api) -> None:
    ids = await api.ready_images(7)
    album = await _album(api, description="Summer 2026", cover=ids[0])
    assert (album["name"], album["cover"]) == ("Holiday", ids[0])

    results = await _add(api, album["album_id"], [*ids, ids[0], MISSING_IMAGE])
    assert results == {**dict.fromkeys(ids, "ok"), MISSING_IMAGE: "image_not_found"}
    assert await _add(api, album["album_id"], ids[:2]) == dict.fromkeys(ids[:2], "already_in_album")

    newest_first = list(reversed(ids))
    assert await _shown(api, album["album_id"], limit="3") == newest_first
    status, page, _ = await api.call("GET", f"/albums/{album['album_id']}", params={"limit": "3"})
    assert len(page["images"]) == 3
    assert page["cover_image"]["image_id"] == ids[0]
    assert page["images"][0]["variants"]

    status, listed, _ = await api.call("GET", "/albums")
    assert [a["album_id"] for a in listed["items"]] == [album["album_id"]]

    status, renamed, _ = await api.call(
        "PATCH", f"/albums/{album['album_id']}", json={"name": "Beach", "cover": None}
    )
    assert (status, renamed["name"], renamed["cover"]) == (200, "Beach", None)

    status, body, _ = await api.call(
        "DELETE", f"/albums/{album['album_id']}/images", json={"image_ids": [ids[0], ids[0]]}
    )
    assert (status, body["results"]) == (200, {ids[0]: "ok"})
    assert ids[0] not in await _shown(api, album["album_id"])

    assert (await api.call("DELETE", f"/albums/{album['album_id']}"))[0] == 204
    assert (await api.call("GET", f"/albums/{album['album_id']}"))[0] == 404
    for image_id in ids:  # the images stay, out of the album
        status, image, _ = await api.call("GET", f"/images/{image_id}")
        assert (status, image["status"]) == (200, "ready")


async def test_a_trashed_image_leaves_the_album_until_restored_and_a_purged_one_for_good(
    api: Api, moto_endpoint: str
) -> None:
    kept, trashed = await api.ready_images(2)
    album = await _album(api)
    await _add(api, album["album_id"], [kept, trashed])
    assert (await api.call("DELETE", f"/images/{trashed}"))[0] == 204
    assert await _shown(api, album["album_id"]) == [kept]
    assert (await api.call("POST", f"/images/{trashed}/restore"))[0] == 200
    assert await _shown(api, album["album_id"]) == [trashed, kept]

    assert (await api.call("DELETE", f"/images/{trashed}", params={"permanent": "true"}))[0] == 204
    assert await _shown(api, album["album_id"]) == [kept]
    dynamodb = emulator_client("dynamodb", moto_endpoint)
    members = dynamodb.query(
        TableName=api.settings.table,
        KeyConditionExpression="user_id = :owner AND begins_with(image_id, :album)",
        ExpressionAttributeValues={
            ":owner": {"S": "alice"},
            ":album": {"S": f"albumimg#{album['album_id']}#"},
        },
    )["Items"]
    assert [item["album_image"]["S"] for item in members] == [kept]  # purged with the image


async def test_another_users_albums_and_images_are_out_of_reach(api: Api) -> None:
    (mine,) = await api.ready_images(1)
    (theirs,) = await api.ready_images(1, user="bob")
    album = await _album(api)
    assert await _add(api, album["album_id"], [theirs]) == {theirs: "image_not_found"}
    for method, path, body in (
        ("GET", f"/albums/{album['album_id']}", None),
        ("PATCH", f"/albums/{album['album_id']}", {"name": "x"}),
        ("DELETE", f"/albums/{album['album_id']}", None),
        ("PUT", f"/albums/{album['album_id']}/images", {"image_ids": [mine]}),
        ("DELETE", f"/albums/{album['album_id']}/images", {"image_ids": [mine]}),
    ):
        status, answer, _ = await api.call(method, path, user="bob", json=body)
        assert (status, answer["error"]["code"]) == (404, "album_not_found"), (method, path)
    status, listed, _ = await api.call("GET", "/albums", user="bob")
    assert listed["items"] == []
    status, answer, _ = await api.call("POST", "/albums", json={"name": "x", "cover": theirs})
    assert (status, answer["error"]["code"]) == (422, "invalid_cover")


async def test_concurrent_adds_of_one_image_to_many_albums_all_land(api: Api) -> None:
    (image_id,) = await api.ready_images(1)
    albums = [await _album(api, name=f"a{n}") for n in range(6)]
    results = await asyncio.gather(*(_add(api, a["album_id"], [image_id]) for a in albums))
    assert results == [{image_id: "ok"}] * 6
    for album in albums:
        assert await _shown(api, album["album_id"]) == [image_id]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/albums", {"name": ""}),
        ("POST", "/albums", {"name": "a\x00b"}),
        ("POST", "/albums", {"name": "\ud800"}),
        ("POST", "/albums", {"name": "x" * 201}),
        ("POST", "/albums", {"name": "x", "cover": "not-an-id"}),
        ("POST", "/albums", {"name": "x", "owner": "bob"}),
        ("PATCH", "/albums/" + "0" * 32, {}),
        ("PUT", "/albums/" + "0" * 32 + "/images", {"image_ids": []}),
        ("PUT", "/albums/" + "0" * 32 + "/images", {"image_ids": [MISSING_IMAGE] * 101}),
        ("PUT", "/albums/" + "0" * 32 + "/images", {"image_ids": ["../../etc"]}),
        ("DELETE", "/albums/" + "0" * 32 + "/images", {"image_ids": "all"}),
    ],
)
async def test_a_malformed_album_request_is_a_422(
    api: Api, method: str, path: str, body: dict[str, Any]
) -> None:
    status, answer, _ = await api.call(method, path, json=body)
    assert status == 422, answer
    assert answer["error"]["code"] == "validation_error"


async def test_a_forged_album_cursor_is_refused(api: Api) -> None:
    album = await _album(api)
    status, answer, _ = await api.call(
        "GET", f"/albums/{album['album_id']}", params={"cursor": "eyJ.abc"}
    )
    assert (status, answer["error"]["code"]) == (422, "invalid_cursor")
