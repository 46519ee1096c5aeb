"""A CDN in front of rendition URLs forgets an image's renditions when it must: every change that
hides them or makes them another edition invalidates exactly that image's rendition paths, on
moto's CloudFront, through the worker's aioboto3 client."""

from __future__ import annotations

import asyncio

from tests import images
from tests.integration.cdn import distribution, invalidated_paths, purged, rendition_paths
from tests.integration.conftest import Api, MakeApi
from tests.integration.receivers import SECRET, Receiver


async def _ready(api: Api, user: str = "alice") -> str:
    _, status, image = await api.upload(images.jpeg(640, 480), user=user)
    assert (status, image["status"]) == (200, "ready")
    status, body, _ = await api.call(
        "GET", f"/images/{image['image_id']}/render?w=256&h=256&fit=cover", user=user
    )
    assert status == 200
    async with api.http.get(body["url"]) as response:
        assert response.status == 200  # a rendition a CDN could be holding
    # The wildcard covers the URL: its path is under the image's rendition prefix.
    path = "/r/" + body["url"].split("/r/", 1)[1]
    assert path.startswith(rendition_paths(user, image["image_id"])[0].removesuffix("*"))
    return str(image["image_id"])


async def test_each_change_that_hides_or_replaces_renditions_purges_that_images_paths(
    make_api: MakeApi, moto_endpoint: str
) -> None:
    cloudfront, distribution_id = await asyncio.to_thread(distribution, moto_endpoint)
    api = await make_api(cdn="cloudfront", cdn_distribution_id=distribution_id)
    image_id = await _ready(api)
    other = await _ready(api, user="bob")
    assert invalidated_paths(cloudfront, distribution_id) == [], "ready purges nothing"

    # Tags and descriptions change no rendition: no purge.
    status, _, _ = await api.call("PATCH", f"/images/{image_id}", json={"tags": ["cat"]})
    assert status == 200
    status, _, _ = await api.call(
        "PATCH", f"/images/{image_id}", json={"focal": {"x": 0.2, "y": 0.3}}
    )
    assert status == 200
    purges = await purged(cloudfront, distribution_id, 1)
    assert purges == [rendition_paths("alice", image_id)]

    assert (await api.call("DELETE", f"/images/{image_id}"))[0] == 204  # into the trash
    purges = await purged(cloudfront, distribution_id, 2)
    assert purges == [rendition_paths("alice", image_id)] * 2
    assert (await api.call("POST", f"/images/{image_id}/restore"))[0] == 200

    status, _, _ = await api.call("DELETE", f"/images/{other}?permanent=true", user="bob")
    assert status == 204
    purges = await purged(cloudfront, distribution_id, 3)
    assert sorted(purges) == sorted(
        [rendition_paths("alice", image_id)] * 2 + [rendition_paths("bob", other)]
    )
    await asyncio.sleep(1)  # the restore and the tag change owed nothing
    assert len(invalidated_paths(cloudfront, distribution_id)) == 3
    assert (await api.metrics())[("image_service_cdn_purges_total", (("outcome", "purged"),))] == 3


async def test_without_a_cdn_nothing_is_purged_but_the_operator_can_hear_cdn_purge(
    make_api: MakeApi, moto_endpoint: str, receiver: Receiver
) -> None:
    cloudfront, distribution_id = await asyncio.to_thread(distribution, moto_endpoint)
    api = await make_api(
        webhook_url=receiver.url + "/hooks", webhook_secret=SECRET, webhook_cdn_purge=True
    )
    image_id = await _ready(api)
    assert (await api.call("DELETE", f"/images/{image_id}"))[0] == 204
    await receiver.until(2)  # image.ready, then cdn.purge
    (purge,) = [event for event in receiver.events() if event["type"] == "cdn.purge"]
    assert purge["data"] == {"image_id": image_id, "paths": rendition_paths("alice", image_id)}
    assert invalidated_paths(cloudfront, distribution_id) == []
