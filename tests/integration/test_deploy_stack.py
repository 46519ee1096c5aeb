"""deploy/cloudformation/image-service.yaml, deployed into moto's CloudFormation: `image-service
init --verify` finds nothing to create or change, names what differs when something does, and
an image's whole lifecycle works on the stack's resources (the S3 event path included)."""

from __future__ import annotations

import os
import uuid

import pytest

from image_service.storage.provision import ABANDONED_UPLOADS_RULE
from tests import images
from tests.cloudformation import TEMPLATE, apply_ignored_properties
from tests.integration.conftest import REGION, MakeApi, emulator_client
from tests.processes import run_command

CORS_ORIGINS = ["https://app.example.com", "https://admin.example.com"]


def _deploy(endpoint: str) -> dict[str, str]:
    """A stack of fresh names; its outputs."""
    suffix = uuid.uuid4().hex[:10]
    cloudformation = emulator_client("cloudformation", endpoint)
    name = f"image-service-{suffix}"
    cloudformation.create_stack(
        StackName=name,
        TemplateBody=TEMPLATE.read_text(),
        Parameters=[
            {"ParameterKey": "BucketName", "ParameterValue": f"images-{suffix}"},
            {"ParameterKey": "TableName", "ParameterValue": f"images-{suffix}"},
            {"ParameterKey": "QueueName", "ParameterValue": f"jobs-{suffix}"},
            {"ParameterKey": "CorsOrigins", "ParameterValue": ",".join(CORS_ORIGINS)},
        ],
        Capabilities=["CAPABILITY_IAM"],
    )
    stack = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    outputs = {output["OutputKey"]: output["OutputValue"] for output in stack["Outputs"]}
    sqs = emulator_client("sqs", endpoint)
    queue_arn = sqs.get_queue_attributes(QueueUrl=outputs["QueueUrl"], AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    apply_ignored_properties(
        emulator_client("s3", endpoint),
        sqs,
        emulator_client("dynamodb", endpoint),
        bucket=outputs["ImageServiceBucket"],
        table=outputs["ImageServiceTable"],
        queue_url=outputs["QueueUrl"],
        queue_arn=queue_arn,
        cors_origins=CORS_ORIGINS,
    )
    return outputs


def _settings(outputs: dict[str, str]) -> dict[str, str]:
    """The service's environment from the stack's outputs, as docs/deployment.md says."""
    return {
        "IMAGE_SERVICE_BUCKET": outputs["ImageServiceBucket"],
        "IMAGE_SERVICE_TABLE": outputs["ImageServiceTable"],
        "IMAGE_SERVICE_QUEUE_NAME": outputs["ImageServiceQueueName"],
        "IMAGE_SERVICE_CORS_ORIGINS": outputs["ImageServiceCorsOrigins"],
        "IMAGE_SERVICE_JOB_VISIBILITY_SECONDS": outputs["ImageServiceJobVisibilitySeconds"],
        "IMAGE_SERVICE_JOB_MAX_RECEIVES": outputs["ImageServiceJobMaxReceives"],
        "AWS_DEFAULT_REGION": outputs["AwsDefaultRegion"],
    }


async def _verify(outputs: dict[str, str]) -> tuple[int, str, str]:
    return await run_command("init", "--verify", env={**os.environ, **_settings(outputs)})


@pytest.fixture
def stack(moto_endpoint: str) -> dict[str, str]:
    return _deploy(moto_endpoint)


async def test_init_finds_nothing_to_create_or_change_on_the_stack(
    stack: dict[str, str],
) -> None:
    status, out, err = await _verify(stack)
    assert status == 0, out + err
    assert "nothing to create or change" in out


async def test_verify_names_each_difference_and_fails(
    stack: dict[str, str], moto_endpoint: str
) -> None:
    s3 = emulator_client("s3", moto_endpoint)
    sqs = emulator_client("sqs", moto_endpoint)
    s3.delete_bucket_lifecycle(Bucket=stack["ImageServiceBucket"])
    sqs.set_queue_attributes(QueueUrl=stack["QueueUrl"], Attributes={"VisibilityTimeout": "60"})

    status, out, err = await _verify(stack)
    assert status != 0
    assert f"lifecycle rule {ABANDONED_UPLOADS_RULE['ID']} differs" in out
    assert "visibility timeout 60 s, not 20 s" in out
    assert "2 difference(s)" in err

    # And init itself puts them right.
    status, out, err = await run_command("init", env={**os.environ, **_settings(stack)})
    assert status == 0, err
    status, out, err = await _verify(stack)
    assert status == 0, out + err


async def test_verify_names_a_missing_stack(moto_endpoint: str) -> None:
    suffix = uuid.uuid4().hex[:10]
    outputs = {
        "ImageServiceBucket": f"absent-{suffix}",
        "ImageServiceTable": f"absent-{suffix}",
        "ImageServiceQueueName": f"absent-{suffix}",
        "ImageServiceCorsOrigins": "*",
        "ImageServiceJobVisibilitySeconds": "20",
        "ImageServiceJobMaxReceives": "5",
        "AwsDefaultRegion": REGION,
    }
    status, out, _ = await _verify(outputs)
    assert status != 0
    for missing in (f"bucket absent-{suffix}", f"table absent-{suffix}", f"queue absent-{suffix}"):
        assert f"{missing}: missing" in out


async def test_an_image_goes_through_its_whole_lifecycle_on_the_stack(
    stack: dict[str, str], make_api: MakeApi, moto_endpoint: str
) -> None:
    api = await make_api(
        provisioned=False,
        bucket=stack["ImageServiceBucket"],
        table=stack["ImageServiceTable"],
        queue_name=stack["ImageServiceQueueName"],
        cors_origins=tuple(stack["ImageServiceCorsOrigins"].split(",")),
    )
    data = images.jpeg(64, 48)
    upload = await api.upload_url(content_type="image/jpeg", tags=["stack"])
    assert await api.send_to_s3(upload, data) == 200
    image_id = upload["image_id"]
    status, body, _ = await api.call("POST", f"/images/{image_id}/complete")
    assert status == 200, body
    ready = await api.processed(image_id)
    assert ready["status"] == "ready"
    assert ready["size"] == len(data)

    status, page, _ = await api.call("GET", "/images?tag=stack")
    assert [item["image_id"] for item in page["items"]] == [image_id]
    status, download, _ = await api.call("GET", f"/images/{image_id}/download")
    assert status == 200
    async with api.http.get(download["download_url"]) as response:
        assert await response.read() == data
    status, _, _ = await api.call("DELETE", f"/images/{image_id}", params={"permanent": "true"})
    assert status == 204
    assert api.object_keys() == []

    # The stack's bucket notification: an upload nobody completes is processed all the same.
    unattended = await api.upload_url(content_type="image/jpeg")
    assert await api.send_to_s3(unattended, data) == 200
    assert (await api.processed(unattended["image_id"]))["status"] == "ready"
