"""`image-service migrate [--apply]`: the original service's images, planted exactly as it
stored them (one item without status, the bytes at ``images/<image id>``), taken in by the real
command against moto."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from tests import images
from tests.faults import FaultProxy, s3
from tests.integration.conftest import Api, MakeApi, emulator_client
from tests.processes import run_command


def _plant(
    api: Api,
    moto_endpoint: str,
    owner: str,
    data: bytes | None,
    *,
    content_type: str = "image/jpeg",
    tags: Any = None,
    description: str = "",
    upload_time: str = "2024-03-01T10:00:00",
) -> str:
    """An image as the original service stored it (its README's metadata model)."""
    image_id = str(uuid.uuid4())
    item: dict[str, Any] = {
        "user_id": {"S": owner},
        "image_id": {"S": image_id},
        "s3_key": {"S": f"images/{image_id}"},
        "content_type": {"S": content_type},
        "upload_time": {"S": upload_time},
        "description": {"S": description},
    }
    if tags is not None:
        item["tags"] = tags
    emulator_client("dynamodb", moto_endpoint).put_item(TableName=api.settings.table, Item=item)
    if data is not None:
        api.s3.put_object(Bucket=api.settings.bucket, Key=f"images/{image_id}", Body=data)
    return image_id


async def _migrate(
    api: Api, *args: str, environment: dict[str, str] | None = None
) -> tuple[int, list[str]]:
    env = api.child_environment() | (environment or {})
    code, out, err = await run_command("migrate", *args, env=env)
    return code, out.splitlines() + err.splitlines()


async def test_the_original_services_images_are_taken_in_and_served(
    make_api: MakeApi, moto_endpoint: str
) -> None:
    api = await make_api()
    photo = images.jpeg(80, 60)
    ours = _plant(
        api,
        moto_endpoint,
        "alice",
        photo,
        tags={"L": [{"S": "Cat"}, {"S": "beach"}]},
        description="from the old service",
    )
    bobs = _plant(api, moto_endpoint, "bob", images.png(), content_type="image/png")
    disguised = _plant(api, moto_endpoint, "alice", images.HTML)
    lost = _plant(api, moto_endpoint, "alice", None)
    overtagged = _plant(
        api, moto_endpoint, "alice", images.jpeg(), tags={"SS": [f"t{n}" for n in range(21)]}
    )

    # Before: not an image of this service yet, and not an orphan either.
    assert (await api.call("GET", f"/images/{ours}"))[0] == 404
    _, out, _ = await run_command("reconcile", "--grace-seconds", "0", env=api.child_environment())
    assert f"images/{ours}" not in out, "reconcile --fix would have deleted it"

    code, lines = await _migrate(api)
    assert code == 1  # some cannot be taken in
    assert f"would migrate: alice/{ours}" in lines
    assert f"would migrate: bob/{bobs}" in lines
    assert f"not migrated (object_missing): alice/{lost}" in lines
    assert f"not migrated (too_many_tags): alice/{overtagged}" in lines
    assert (await api.call("GET", f"/images/{ours}"))[0] == 404, "a dry run changes nothing"

    code, lines = await _migrate(api, "--apply")
    assert code == 1
    assert f"migrated: alice/{ours}" in lines
    assert f"migrated: bob/{bobs}" in lines
    assert f"not migrated (content_mismatch): alice/{disguised}" in lines
    assert f"not migrated (object_missing): alice/{lost}" in lines
    assert f"not migrated (too_many_tags): alice/{overtagged}" in lines

    image = await api.processed(ours)
    assert image["status"] == "ready"
    assert image["upload_time"].startswith("2024-03-01T10:00:00")
    assert image["tags"] == ["cat", "beach"]
    assert image["description"] == "from the old service"
    assert (image["width"], image["height"]) == (80, 60)
    assert {variant["name"] for variant in image["variants"]} >= {"thumb"}
    status, page, _ = await api.call("GET", "/images", params={"tag": "cat"})
    assert (status, [item["image_id"] for item in page["items"]]) == (200, [ours])
    status, download, _ = await api.call("GET", f"/images/{ours}/download")
    assert status == 200
    async with api.http.get(download["download_url"]) as response:
        assert await response.read() == photo
    # Under its owner's prefix now; the old key is gone, the refused ones' keys are kept.
    keys = api.object_keys()
    assert f"images/alice/{ours}/original" in keys
    assert f"images/{ours}" not in keys
    assert f"images/{disguised}" in keys
    assert (await api.call("GET", f"/images/{bobs}"))[0] == 404, "still only its owner's"
    assert (await api.processed(bobs, user="bob"))["status"] == "ready"

    # Again: nothing more to do. The disguised one is a rejected image now, like any refused
    # upload; the two that could not be tried are still the original service's.
    code, lines = await _migrate(api, "--apply")
    assert "migrated 0, completed 0 left uploads, 2 refused, indexed 0 digests" in lines


async def test_images_verified_before_digests_existed_get_theirs_under_traffic(
    make_api: MakeApi, moto_endpoint: str
) -> None:
    api = await make_api()
    photos = [images.encode("PNG", 40, 30, (n, 10, 200)) for n in range(6)]
    ready = [(await api.upload(photo, content_type="image/png"))[2] for photo in photos]
    dynamodb = emulator_client("dynamodb", moto_endpoint)
    for image in ready:  # as an earlier version stored them: no uploaded digest, no digest item
        key = {"user_id": {"S": "alice"}, "image_id": {"S": image["image_id"]}}
        dynamodb.update_item(
            TableName=api.settings.table, Key=key, UpdateExpression="REMOVE uploaded_sha256"
        )
        dynamodb.delete_item(
            TableName=api.settings.table,
            Key={"user_id": {"S": "alice"}, "image_id": {"S": f"sha256#{image['sha256']}"}},
        )
    digests = [image["sha256"] for image in ready]
    _, answer, _ = await api.call("POST", "/images/check", json={"checksums_sha256": digests})
    assert [r["image_id"] for r in answer["results"]] == [None] * 6

    code, lines = await _migrate(api)  # a dry run says what it would do, and does nothing
    assert "would migrate 0, completed 0 left uploads, 0 refused, would index 6 digests" in (
        " ".join(lines)
    )
    # Live: while it runs, the owner deletes one and retags another.
    migration = asyncio.create_task(_migrate(api, "--apply"))
    await api.call("DELETE", f"/images/{ready[0]['image_id']}")
    await api.call("PATCH", f"/images/{ready[1]['image_id']}", json={"tags": ["kept"]})
    code, lines = await migration
    assert code == 0, lines

    _, answer, _ = await api.call("POST", "/images/check", json={"checksums_sha256": digests})
    assert [r["image_id"] for r in answer["results"]] == [None] + [i["image_id"] for i in ready[1:]]
    _, retagged, _ = await api.call("GET", f"/images/{ready[1]['image_id']}")
    assert retagged["tags"] == ["kept"]  # the edit made meanwhile stands
    code, lines = await _migrate(api, "--apply")
    assert "indexed 0 digests" in " ".join(lines)


async def test_a_migration_cut_short_is_finished_by_the_next_run(
    make_api: MakeApi, moto_endpoint: str
) -> None:
    api = await make_api()
    image_id = _plant(api, moto_endpoint, "alice", images.jpeg())
    async with FaultProxy(moto_endpoint) as proxy:
        # S3 fails every read of the upload: the image is taken in, and completing it fails.
        proxy.fail(s3("HEAD", f"incoming/alice/{image_id}"), status=503, times=None)
        code, lines = await _migrate(api, "--apply", environment={"AWS_ENDPOINT_URL_S3": proxy.url})
    assert code == 2
    assert any("run it again" in line for line in lines), lines
    assert (await api.call("GET", f"/images/{image_id}"))[1]["status"] == "pending"

    code, lines = await _migrate(api, "--apply")
    assert code == 0, lines
    assert f"completed a left upload: alice/{image_id}" in lines
    assert (await api.processed(image_id))["status"] == "ready"
    # The old object the cut-short run could not delete is now an orphan, and said to be one
    # (judged at once: nothing else writes here).
    code, out, _ = await run_command(
        "reconcile", "--grace-seconds", "0", env=api.child_environment()
    )
    assert f"object without record: images/{image_id}" in out
