"""`image-service reconcile [--fix]` on planted orphans, run as the real command."""

from __future__ import annotations

import uuid

from tests import images
from tests.conftest import MakeApi
from tests.processes import run_command


async def _reconcile(env: dict[str, str], *args: str) -> tuple[int, str]:
    status, out, _ = await run_command("reconcile", *args, env=env)
    return status, out


async def test_reconcile_reports_then_repairs_only_with_fix(make_api: MakeApi) -> None:
    api = await make_api()
    kept, _, _ = await api.upload(images.jpeg())
    broken, _, _ = await api.upload(images.png(), content_type="image/png")
    bucket = api.settings.bucket
    # A record whose original vanished, an object nobody owns, and a fresh upload in flight.
    api.s3.delete_object(Bucket=bucket, Key=f"images/alice/{broken['image_id']}/original")
    ghost = f"images/ghost/{uuid.uuid4()}/original"
    api.s3.put_object(Bucket=bucket, Key=ghost, Body=images.png())
    in_flight = await api.upload_url()
    assert await api.send_to_s3(in_flight, images.jpeg()) == 200

    env = api.child_environment()
    status, report = await _reconcile(env)
    assert status == 1, report
    assert f"record without object: alice/{broken['image_id']}" in report
    assert f"object without record: {ghost}" in report
    assert "incoming/" not in report, "a recent upload is not an orphan"
    assert ghost in api.object_keys(), "nothing changes without --fix"

    status, report = await _reconcile(env, "--fix")
    assert status == 0, report
    assert "repaired: 1 records without objects, 1 objects without records" in report
    status, report = await _reconcile(env)
    assert (status, report.strip().splitlines()[-1]) == (
        0,
        "consistent: 0 records without objects, 0 objects without records",
    )
    assert ghost not in api.object_keys()
    assert (await api.call("GET", f"/images/{broken['image_id']}"))[0] == 404
    status, image, _ = await api.call("GET", f"/images/{kept['image_id']}")
    assert (status, image["status"]) == (200, "ready"), "the healthy image is untouched"
