"""Nothing abandoned lives forever: pending and rejected records expire, abandoned uploads are
removed by a lifecycle rule, both set up by provisioning."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from image_service.programs.cli import main
from image_service.storage.clients import provision
from tests import images
from tests.integration.conftest import JWT_SECRET, Api, MakeApi, emulator_client


def _dynamodb(moto_endpoint: str) -> Any:
    return emulator_client("dynamodb", moto_endpoint)


def _item(api: Api, moto_endpoint: str, image_id: str) -> dict[str, Any]:
    return _dynamodb(moto_endpoint).get_item(  # type: ignore[no-any-return]
        TableName=api.settings.table,
        Key={"user_id": {"S": "alice"}, "image_id": {"S": image_id}},
    )["Item"]


async def test_provisioning_sets_ttl_and_the_upload_lifecycle_rule(
    api: Api, moto_endpoint: str
) -> None:
    ttl = _dynamodb(moto_endpoint).describe_time_to_live(TableName=api.settings.table)
    assert ttl["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "ENABLED",
        "AttributeName": "expires_at",
    }
    rules = api.s3.get_bucket_lifecycle_configuration(Bucket=api.settings.bucket)["Rules"]
    assert len(rules) == 1
    assert rules[0]["Filter"] == {"Prefix": "incoming/"}
    assert rules[0]["Expiration"] == {"Days": 1}
    assert rules[0]["Status"] == "Enabled"


async def test_only_records_of_unfinished_uploads_expire(
    make_api: MakeApi, moto_endpoint: str
) -> None:
    api = await make_api(dead_record_ttl_seconds=3600)
    pending = await api.upload_url()
    item = _item(api, moto_endpoint, pending["image_id"])
    status, record, _ = await api.call("GET", f"/images/{pending['image_id']}")
    assert status == 200
    updated = int(datetime.fromisoformat(record["updated_at"].replace("Z", "+00:00")).timestamp())
    assert int(item["expires_at"]["N"]) == updated + 3600

    upload, status, ready = await api.upload(images.jpeg())
    assert ready["status"] == "ready"
    assert "expires_at" not in _item(api, moto_endpoint, upload["image_id"])

    rejected = await api.upload_url()
    assert await api.send_to_s3(rejected, images.HTML, **{"Content-Type": "image/jpeg"}) == 200
    status, _, _ = await api.call("POST", f"/images/{rejected['image_id']}/complete")
    assert status == 422
    assert "expires_at" in _item(api, moto_endpoint, rejected["image_id"])


async def test_provisioning_twice_keeps_one_configuration(
    make_api: MakeApi, moto_endpoint: str
) -> None:
    api = await make_api()
    await provision(api.settings)
    ttl = _dynamodb(moto_endpoint).describe_time_to_live(TableName=api.settings.table)
    assert ttl["TimeToLiveDescription"]["TimeToLiveStatus"] == "ENABLED"
    assert len(api.s3.get_bucket_lifecycle_configuration(Bucket=api.settings.bucket)["Rules"]) == 1


def test_cli_init_is_idempotent(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IMAGE_SERVICE_JWT_SECRET", JWT_SECRET)
    monkeypatch.setenv("IMAGE_SERVICE_BUCKET", "init-twice")
    monkeypatch.setenv("IMAGE_SERVICE_TABLE", "init-twice")
    main(["init"])
    main(["init"])
    assert capsys.readouterr().out.count("are ready") == 2
