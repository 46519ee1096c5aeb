"""docs/deployment.md's IAM policies grant exactly the AWS calls the code makes.

The calls are read from the storage modules' source (every `<client>.<operation>(...)`,
paginator and waiter, and every `self._dynamodb.call("<Operation>", ...)` of the DynamoDB
client of our own), so a new call without its permission fails here, and so does a
permission nothing uses any more."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest

from image_service.settings import Settings
from image_service.storage import provision
from image_service.storage.dynamo import EXPIRY_ATTRIBUTE
from tests import cloudformation

ROOT = Path(__file__).resolve().parents[2]
STORAGE = ROOT / "image_service" / "storage"
DEPLOYMENT = ROOT / "docs" / "deployment.md"

# The service each module's `_client` speaks to; provision.py names its clients by service.
RUNTIME_MODULES = {
    "s3.py": "s3",
    # Every room of the table: a new one's calls are checked as soon as it exists.
    **{
        f"dynamo/{path.name}": "dynamodb"
        for path in sorted((STORAGE / "dynamo").glob("*.py"))
        if path.name not in {"__init__.py", "codec.py", "calls.py", "wire.py", "repository.py"}
    },
    "queue.py": "sqs",
    "presign.py": "s3",
    "cdn.py": "cloudfront",
}
CLIENT_NAMES = {
    "_client",
    "_long_poll_client",
    "s3",
    "sqs",
    "dynamodb",
    "presign_client",
    "_dynamodb",
}
# botocore operations that are not requests (URLs are signed locally) or need no permission.
LOCAL_OPERATIONS = {
    "generate_presigned_url",
    "generate_presigned_post",
    "get_paginator",
    "get_waiter",
}

IAM_ACTIONS: dict[tuple[str, str], set[str]] = {
    ("s3", "head_object"): {"s3:GetObject"},
    ("s3", "get_object"): {"s3:GetObject"},
    ("s3", "put_object"): {"s3:PutObject"},
    ("s3", "copy_object"): {"s3:GetObject", "s3:PutObject"},
    ("s3", "delete_objects"): {"s3:DeleteObject"},
    ("s3", "list_objects_v2"): {"s3:ListBucket"},
    ("s3", "create_multipart_upload"): {"s3:PutObject"},
    ("s3", "complete_multipart_upload"): {"s3:PutObject"},
    ("s3", "list_parts"): {"s3:ListMultipartUploadParts"},
    ("s3", "abort_multipart_upload"): {"s3:AbortMultipartUpload"},
    ("s3", "head_bucket"): {"s3:ListBucket"},
    ("s3", "create_bucket"): {"s3:CreateBucket"},
    ("s3", "put_public_access_block"): {"s3:PutBucketPublicAccessBlock"},
    ("s3", "put_bucket_lifecycle_configuration"): {"s3:PutLifecycleConfiguration"},
    ("s3", "put_bucket_cors"): {"s3:PutBucketCORS"},
    ("s3", "put_bucket_notification_configuration"): {"s3:PutBucketNotification"},
    # init --verify reads what init writes.
    ("s3", "get_public_access_block"): {"s3:GetBucketPublicAccessBlock"},
    ("s3", "get_bucket_lifecycle_configuration"): {"s3:GetLifecycleConfiguration"},
    ("s3", "get_bucket_cors"): {"s3:GetBucketCORS"},
    ("s3", "get_bucket_notification_configuration"): {"s3:GetBucketNotification"},
    ("dynamodb", "get_item"): {"dynamodb:GetItem"},
    ("dynamodb", "batch_get_item"): {"dynamodb:BatchGetItem"},
    ("dynamodb", "put_item"): {"dynamodb:PutItem"},
    ("dynamodb", "delete_item"): {"dynamodb:DeleteItem"},
    ("dynamodb", "query"): {"dynamodb:Query"},
    ("dynamodb", "scan"): {"dynamodb:Scan"},
    ("dynamodb", "batch_write_item"): {"dynamodb:BatchWriteItem"},
    ("dynamodb", "update_item"): {"dynamodb:UpdateItem"},
    # A transaction needs the permission of each kind of write in it: Put, Update, Delete,
    # and ConditionCheck (an album must exist while an image joins it).
    ("dynamodb", "transact_write_items"): {
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:ConditionCheckItem",
    },
    ("dynamodb", "describe_table"): {"dynamodb:DescribeTable"},
    # The worker's purges, with IMAGE_SERVICE_CDN=cloudfront only.
    ("cloudfront", "create_invalidation"): {"cloudfront:CreateInvalidation"},
    ("dynamodb", "table_exists"): {"dynamodb:DescribeTable"},  # the waiter
    ("dynamodb", "create_table"): {"dynamodb:CreateTable"},
    ("dynamodb", "update_table"): {"dynamodb:UpdateTable"},
    ("dynamodb", "describe_time_to_live"): {"dynamodb:DescribeTimeToLive"},
    ("dynamodb", "update_time_to_live"): {"dynamodb:UpdateTimeToLive"},
    ("sqs", "send_message"): {"sqs:SendMessage"},
    ("sqs", "receive_message"): {"sqs:ReceiveMessage"},
    ("sqs", "delete_message"): {"sqs:DeleteMessage"},
    ("sqs", "change_message_visibility"): {"sqs:ChangeMessageVisibility"},
    ("sqs", "get_queue_url"): {"sqs:GetQueueUrl"},
    ("sqs", "get_queue_attributes"): {"sqs:GetQueueAttributes"},
    ("sqs", "set_queue_attributes"): {"sqs:SetQueueAttributes"},
    ("sqs", "create_queue"): {"sqs:CreateQueue"},
}
# The service signs upload and download URLs itself; S3 checks them against its role.
PRESIGNED_URL_ACTIONS = {"s3:PutObject", "s3:GetObject"}


def _calls(path: Path, default_service: str | None) -> set[tuple[str, str]]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        receiver = node.func.value
        name = receiver.attr if isinstance(receiver, ast.Attribute) else getattr(receiver, "id", "")
        if name not in CLIENT_NAMES:
            continue
        service = (
            default_service if name in {"_client", "_long_poll_client", "presign_client"} else name
        )
        assert service is not None, f"{path.name}: which service is {name}?"
        operation = node.func.attr
        if name == "_dynamodb":  # storage/dynamo/wire.py: call("GetItem", ...)
            assert operation == "call", f"{path.name}: _dynamodb.{operation}?"
            argument = node.args[0]
            assert isinstance(argument, ast.Constant)
            service, operation = "dynamodb", re.sub(r"(?<!^)([A-Z])", r"_\1", argument.value)
            operation = operation.lower()
        if operation in {"get_paginator", "get_waiter"}:
            argument = node.args[0]
            assert isinstance(argument, ast.Constant)
            operation = str(argument.value)
        if operation not in LOCAL_OPERATIONS:
            found.add((service, operation))
    return found


def _actions(calls: set[tuple[str, str]]) -> set[str]:
    unknown = sorted(call for call in calls if call not in IAM_ACTIONS)
    assert not unknown, f"name the IAM actions these calls need: {unknown}"
    return set().union(*(IAM_ACTIONS[call] for call in calls))


def _policy(marker: str) -> set[str]:
    text = DEPLOYMENT.read_text()
    block = re.search(rf"<!-- iam:{marker} -->\n```json\n(.*?)```", text, re.S)
    assert block, marker
    policy = json.loads(block[1])
    return {action for statement in policy["Statement"] for action in statement["Action"]}


def test_the_runtime_policy_grants_exactly_what_the_service_calls() -> None:
    calls = set().union(
        *(_calls(STORAGE / module, service) for module, service in RUNTIME_MODULES.items())
    )

    assert _policy("runtime") == _actions(calls) | PRESIGNED_URL_ACTIONS


def test_the_provisioning_policy_grants_exactly_what_init_calls() -> None:
    calls = _calls(STORAGE / "provision.py", None)

    assert _policy("provisioning") == _actions(calls)


@pytest.mark.parametrize("marker", ["runtime", "provisioning"])
def test_each_policy_statement_names_its_resources(marker: str) -> None:
    text = DEPLOYMENT.read_text()
    block = re.search(rf"<!-- iam:{marker} -->\n```json\n(.*?)```", text, re.S)
    assert block
    for statement in json.loads(block[1])["Statement"]:
        resources = statement["Resource"]
        for resource in [resources] if isinstance(resources, str) else resources:
            assert resource.startswith("arn:aws:")
            assert resource != "*"


# -- deploy/cloudformation/image-service.yaml: the same resources and the same policies --------


def _template_actions(role: str) -> set[str]:
    resources = cloudformation.template()["Resources"]
    return {
        action
        for policy in resources[role]["Properties"]["Policies"]
        for statement in map(_granted, policy["PolicyDocument"]["Statement"])
        for action in statement["Action"]
    }


def _granted(statement: dict[str, Any]) -> dict[str, Any]:
    """A statement as granted when its condition holds (``!If [cond, statement, NoValue]``:
    the CDN's purge, given a distribution)."""
    if "Fn::If" in statement:
        return dict(statement["Fn::If"][1])
    return statement


def test_the_stacks_roles_grant_exactly_the_documented_policies() -> None:
    assert _template_actions("RuntimeRole") == _policy("runtime")
    assert _template_actions("ProvisioningRole") == _policy("provisioning")


def test_the_stacks_table_is_the_one_init_creates() -> None:
    table = cloudformation.template()["Resources"]["Table"]["Properties"]
    assert table["KeySchema"] == [
        {"AttributeName": "user_id", "KeyType": "HASH"},
        {"AttributeName": "image_id", "KeyType": "RANGE"},
    ]
    assert sorted(table["AttributeDefinitions"], key=str) == sorted(
        provision._attribute_definitions(), key=str
    )
    assert table["GlobalSecondaryIndexes"] == provision._index_definitions()
    assert table["TimeToLiveSpecification"] == {
        "AttributeName": EXPIRY_ATTRIBUTE,
        "Enabled": True,
    }
    assert table["BillingMode"] == "PAY_PER_REQUEST"


def test_the_stacks_defaults_are_the_services() -> None:
    parameters = cloudformation.template()["Parameters"]
    defaults = Settings(jwt_secret="x" * 32)
    assert parameters["TableName"]["Default"] == defaults.table
    assert parameters["QueueName"]["Default"] == defaults.queue_name
    assert parameters["JobVisibilitySeconds"]["Default"] == defaults.job_visibility_seconds
    assert parameters["JobMaxReceives"]["Default"] == defaults.job_max_receives
