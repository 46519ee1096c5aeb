"""`image-service reconcile [--fix]` run as the real command: on planted orphans, and beside
users uploading, completing and deleting, where it must never take what is only under way."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid

import pytest

from bench.soak import audit
from tests import images
from tests.integration.conftest import Api, MakeApi
from tests.processes import run_command

# The subject of these tests: a grace this short judges what changed a second ago.
SHORT_GRACE = ("--grace-seconds", "1")


async def _reconcile(env: dict[str, str], *args: str) -> tuple[int, str]:
    status, out, _ = await run_command("reconcile", *args, env=env)
    return status, out


async def _plant_orphans(api: Api) -> tuple[str, str]:
    """A ready image whose original vanished, and an object nobody owns; (image id, key)."""
    broken, _, _ = await api.upload(images.png(), content_type="image/png")
    bucket = api.settings.bucket
    api.s3.delete_object(Bucket=bucket, Key=f"images/alice/{broken['image_id']}/original")
    ghost = f"images/ghost/{uuid.uuid4()}/original"
    api.s3.put_object(Bucket=bucket, Key=ghost, Body=images.png())
    return broken["image_id"], ghost


async def test_reconcile_reports_then_repairs_only_with_fix(make_api: MakeApi) -> None:
    api = await make_api()
    kept, _, _ = await api.upload(images.jpeg())
    broken, ghost = await _plant_orphans(api)
    in_flight = await api.upload_url()
    assert await api.send_to_s3(in_flight, images.jpeg()) == 200
    env = api.child_environment()

    # On the default grace (an hour), what just happened is not judged at all.
    status, report = await _reconcile(env)
    assert (status, report.strip().splitlines()[-1]) == (
        0,
        "consistent: 0 records without objects, 0 objects without records",
    )
    await asyncio.sleep(1.5)
    status, report = await _reconcile(env, *SHORT_GRACE)
    assert status == 1, report
    assert f"record without object: alice/{broken}" in report
    assert f"object without record: {ghost}" in report
    assert "incoming/" not in report, "an upload with a record is nobody's orphan"
    assert ghost in api.object_keys(), "nothing changes without --fix"

    status, report = await _reconcile(env, "--fix", *SHORT_GRACE)
    assert status == 0, report
    assert "repaired: 1 records without objects, 1 objects without records" in report
    status, report = await _reconcile(env, *SHORT_GRACE)
    assert (status, report.strip().splitlines()[-1]) == (
        0,
        "consistent: 0 records without objects, 0 objects without records",
    )
    assert ghost not in api.object_keys()
    assert (await api.call("GET", f"/images/{broken}"))[0] == 404
    status, image, _ = await api.call("GET", f"/images/{kept['image_id']}")
    assert (status, image["status"]) == (200, "ready"), "the healthy image is untouched"
    assert (await api.call("POST", f"/images/{in_flight['image_id']}/complete"))[0] == 200


@pytest.mark.long
async def test_reconcile_fix_beside_live_traffic_loses_nothing(
    make_api: MakeApi, moto_endpoint: str
) -> None:
    """Users run whole lifecycles (upload, complete, wait for ready, keep or delete) while
    `reconcile --fix` runs again and again, on the default grace and on a second's: the audit
    finds every kept image whole and every deleted one gone, and the real orphans, older than
    the grace, are repaired."""
    api = await make_api(upload_rate_per_minute=1_000_000, upload_burst=1_000_000)
    broken, ghost = await _plant_orphans(api)
    await asyncio.sleep(1.5)  # the planted ones are older than the short grace
    env = api.child_environment()

    load = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "image_service", "loadtest", "--json", "--url", api.url),
        *("--users", "4", "--duration", "12", "--keep-every", "2"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    runs: list[str] = []
    while load.returncode is None:
        grace = SHORT_GRACE if len(runs) % 2 == 0 else ()
        status, report = await _reconcile(env, "--fix", *grace)
        assert status == 0, report
        runs.append(report)
        await asyncio.sleep(0.2)  # lets the loop notice the load's exit
    output, _ = await asyncio.wait_for(load.communicate(), timeout=60)
    result = json.loads(output)
    assert len(runs) >= 3, "reconcile ran several times during the load"
    assert result["lifecycles"] > 20

    problems = await audit(
        result,
        api_url=api.url,
        jwt_secret=api.settings.jwt_secret,
        s3_endpoint=moto_endpoint,
        dynamodb_endpoint=moto_endpoint,
        bucket=api.settings.bucket,
        table=api.settings.table,
    )
    assert problems.problems == []
    for image in result["kept"]:
        keys = [k for k in api.object_keys() if image["image_id"] in k]
        assert any(k.endswith("/original") for k in keys), image
    assert ghost not in api.object_keys()
    assert (await api.call("GET", f"/images/{broken}"))[0] == 404
    assert sum(f"alice/{broken}" in report for report in runs) == 1, "repaired once"
