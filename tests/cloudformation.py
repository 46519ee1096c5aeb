"""Reading deploy/cloudformation/image-service.yaml, and what moto's CloudFormation leaves out.

moto deploys the stack's queues, table (keys, indexes), roles and bucket, but ignores some
properties: the bucket's PublicAccessBlockConfiguration, LifecycleConfiguration,
CorsConfiguration and NotificationConfiguration, and the table's TimeToLiveSpecification; and it
deploys no AWS::SQS::QueuePolicy. `apply_ignored_properties` applies exactly those, from the
template, through the S3, SQS and DynamoDB APIs, translated as CloudFormation's resource
reference documents them; what the stack's other resources are, moto made.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

TEMPLATE = (
    Path(__file__).resolve().parent.parent / "deploy" / "cloudformation" / "image-service.yaml"
)


class _Loader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms: !Ref x -> {"Ref": x}, !Sub s -> {"Fn::Sub": s}."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}


_Loader.add_multi_constructor("!", _intrinsic)


def template() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(), Loader=_Loader)  # noqa: S506  # SafeLoader's subclass


def _resolve(value: Any, names: dict[str, str]) -> Any:
    """The few intrinsics the queue policy uses: !Ref, !Sub and !GetAtt of known names."""
    if isinstance(value, list):
        return [_resolve(item, names) for item in value]
    if not isinstance(value, dict):
        return value
    if "Ref" in value:
        return names[value["Ref"]]
    if "Fn::GetAtt" in value:
        return names[".".join(value["Fn::GetAtt"])]
    if "Fn::Sub" in value:
        text = value["Fn::Sub"]
        for name, resolved in names.items():
            text = text.replace("${" + name + "}", resolved)
        assert "${" not in text, text
        return text
    return {key: _resolve(item, names) for key, item in value.items()}


def apply_ignored_properties(
    s3: Any,
    sqs: Any,
    dynamodb: Any,
    *,
    bucket: str,
    table: str,
    queue_url: str,
    queue_arn: str,
    cors_origins: list[str],
) -> None:
    resources = template()["Resources"]
    names = {
        "AWS::Partition": "aws",
        "AWS::AccountId": queue_arn.split(":")[4],
        "BucketName": bucket,
        "JobQueue.Arn": queue_arn,
    }
    policy = _resolve(resources["JobQueuePolicy"]["Properties"]["PolicyDocument"], names)
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})
    properties = resources["Bucket"]["Properties"]
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration=properties["PublicAccessBlockConfiguration"],
    )
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": rule["Id"],
                    "Status": rule["Status"],
                    "Filter": {"Prefix": rule["Prefix"]},
                    "Expiration": {"Days": rule["ExpirationInDays"]},
                    "AbortIncompleteMultipartUpload": rule["AbortIncompleteMultipartUpload"],
                }
                for rule in properties["LifecycleConfiguration"]["Rules"]
            ]
        },
    )
    rules = properties["CorsConfiguration"]["CorsRules"]
    assert all(rule["AllowedOrigins"] == {"Ref": "CorsOrigins"} for rule in rules)
    s3.put_bucket_cors(
        Bucket=bucket,
        CORSConfiguration={
            "CORSRules": [
                {
                    "ID": rule["Id"],
                    "AllowedOrigins": cors_origins,
                    "AllowedMethods": rule["AllowedMethods"],
                    "AllowedHeaders": rule["AllowedHeaders"],
                    "ExposeHeaders": rule["ExposedHeaders"],
                    "MaxAgeSeconds": rule["MaxAge"],
                }
                for rule in rules
            ]
        },
    )
    queues = properties["NotificationConfiguration"]["QueueConfigurations"]
    assert all(entry["Queue"] == {"Fn::GetAtt": ["JobQueue", "Arn"]} for entry in queues)
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": queue_arn,
                    "Events": [entry["Event"]],
                    "Filter": {"Key": {"FilterRules": entry["Filter"]["S3Key"]["Rules"]}},
                }
                for entry in queues
            ]
        },
    )
    ttl = resources["Table"]["Properties"]["TimeToLiveSpecification"]
    dynamodb.update_time_to_live(
        TableName=table,
        TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": ttl["Enabled"]},
    )
