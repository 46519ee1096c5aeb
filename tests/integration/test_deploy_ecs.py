"""deploy/ecs: the API's and the worker's task definitions and services, and the worker's scaling
on queue depth, registered in moto's ECS and Application Auto Scaling as `aws ecs
register-task-definition --cli-input-json` would send them, placeholders filled in."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from image_service.settings import Settings
from tests.integration.conftest import emulator_client

ECS = Path(__file__).resolve().parents[2] / "deploy" / "ecs"
PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)\}")


def _filled(name: str, values: dict[str, str]) -> Any:
    text = (ECS / name).read_text()
    missing = set(PLACEHOLDER.findall(text)) - set(values)
    assert not missing, f"{name}: no value for {sorted(missing)}"
    return json.loads(PLACEHOLDER.sub(lambda match: values[match[1]], text))


@pytest.fixture
def values(moto_endpoint: str) -> dict[str, str]:
    """Real subnets and security groups in moto's EC2 (ECS checks them), and the rest."""
    ec2 = emulator_client("ec2", moto_endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{n}.0/24")["Subnet"]["SubnetId"]
        for n in (1, 2)
    ]
    groups = [
        ec2.create_security_group(GroupName=f"{name}-{vpc}", Description=name, VpcId=vpc)["GroupId"]
        for name in ("api", "worker")
    ]
    suffix = uuid.uuid4().hex[:8]
    account = "arn:aws:iam::123456789012"
    return {
        "CLUSTER": f"images-{suffix}",
        "IMAGE": "123456789012.dkr.ecr.us-east-1.amazonaws.com/image-service:1.0.0",
        "RUNTIME_ROLE_ARN": f"{account}:role/image-service-runtime",
        "EXECUTION_ROLE_ARN": f"{account}:role/ecsTaskExecutionRole",
        "BUCKET": f"images-{suffix}",
        "TABLE": f"images-{suffix}",
        "QUEUE_NAME": f"jobs-{suffix}",
        "CORS_ORIGINS": "https://app.example.com",
        "REGION": "us-east-1",
        "JWT_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:jwt-AbCdEf",
        "PRIVATE_SUBNET_A": subnets[0],
        "PRIVATE_SUBNET_B": subnets[1],
        "API_SECURITY_GROUP": groups[0],
        "WORKER_SECURITY_GROUP": groups[1],
        "TARGET_GROUP_ARN": (
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/api/0123456789abcdef"
        ),
    }


def test_the_task_definitions_and_services_register(
    moto_endpoint: str, values: dict[str, str]
) -> None:
    ecs = emulator_client("ecs", moto_endpoint)
    ecs.create_cluster(clusterName=values["CLUSTER"])
    registered = {}
    for name in ("api", "worker"):
        definition = _filled(f"{name}-task-definition.json", values)
        answer = ecs.register_task_definition(**definition)["taskDefinition"]
        assert answer["status"] == "ACTIVE"
        registered[name] = answer
        service = ecs.create_service(**_filled(f"{name}-service.json", values))["service"]
        assert service["taskDefinition"] == answer["taskDefinitionArn"]
        assert service["status"] == "ACTIVE"
    services = ecs.list_services(cluster=values["CLUSTER"])["serviceArns"]
    assert len(services) == 2

    grace = Settings(jwt_secret="x" * 32).shutdown_grace_seconds
    api = registered["api"]["containerDefinitions"][0]
    # One API process per vCPU, and a stop timeout beyond the drain.
    assert api["command"] == ["serve", "--workers", str(int(registered["api"]["cpu"]) // 1024)]
    assert api["stopTimeout"] > grace
    assert api["portMappings"][0]["containerPort"] == 8080  # the image's IMAGE_SERVICE_PORT
    assert "/health" in " ".join(api["healthCheck"]["command"])
    worker = registered["worker"]["containerDefinitions"][0]
    assert worker["command"] == ["worker"]
    assert worker["stopTimeout"] > grace
    metrics_port = {e["name"]: e["value"] for e in worker["environment"]}[
        "IMAGE_SERVICE_WORKER_METRICS_PORT"
    ]
    assert f":{metrics_port}/health" in " ".join(worker["healthCheck"]["command"])
    for container in (api, worker):
        assert container["readonlyRootFilesystem"] is True
        assert container["user"] == "10001:10001"  # the Dockerfile's user
        assert [s["name"] for s in container["secrets"]] == ["IMAGE_SERVICE_JWT_SECRET"]


def test_the_worker_scales_on_jobs_waiting_per_task(
    moto_endpoint: str, values: dict[str, str]
) -> None:
    ecs = emulator_client("ecs", moto_endpoint)
    ecs.create_cluster(clusterName=values["CLUSTER"])
    ecs.register_task_definition(**_filled("worker-task-definition.json", values))
    ecs.create_service(**_filled("worker-service.json", values))
    scaling = emulator_client("application-autoscaling", moto_endpoint)
    plan = _filled("worker-scaling.json", values)
    scaling.register_scalable_target(**plan["scalableTarget"])
    scaling.put_scaling_policy(**plan["scalingPolicy"])

    resource = f"service/{values['CLUSTER']}/image-service-worker"
    (policy,) = scaling.describe_scaling_policies(ServiceNamespace="ecs", ResourceId=resource)[
        "ScalingPolicies"
    ]
    metrics = policy["TargetTrackingScalingPolicyConfiguration"]["CustomizedMetricSpecification"][
        "Metrics"
    ]
    queue_metric = next(m for m in metrics if m["Id"] == "waiting")["MetricStat"]["Metric"]
    assert queue_metric["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert queue_metric["Dimensions"] == [{"Name": "QueueName", "Value": values["QUEUE_NAME"]}]
    (target,) = scaling.describe_scalable_targets(ServiceNamespace="ecs", ResourceIds=[resource])[
        "ScalableTargets"
    ]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 20)
