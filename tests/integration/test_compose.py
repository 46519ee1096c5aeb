"""docker-compose.yml, the Dockerfiles and LocalStack's init hook. No Docker engine runs here:
the files are checked for the structure and settings they must have, and the hook itself is run
against a real LocalStack (host mode: S3 and SQS) with moto's DynamoDB."""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import uuid
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from image_service.settings import PREFIX, Settings
from tests.integration.conftest import REGION, emulator_client
from tests.localstack import ACCESS_KEY, SECRET_KEY

ROOT = Path(__file__).resolve().parents[2]
HOOK = ROOT / "localstack" / "init" / "ready.d" / "10-image-service.sh"
SETTING_NAMES = {PREFIX + setting.name.upper() for setting in fields(Settings)}
# `${NAME:?message}` and `${NAME:-default}`: what compose substitutes from the shell.
_SUBSTITUTION = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?::[?-][^}]*)?\}")


def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return compose


def _environment(service: str, shell: dict[str, str]) -> dict[str, str]:
    """A service's environment as compose would give it, with `shell` as the caller's."""
    raw = _compose()["services"][service]["environment"]
    return {
        name: _SUBSTITUTION.sub(lambda m: shell.get(m["name"], ""), str(value))
        for name, value in raw.items()
    }


def _dockerfile_stages(path: Path) -> list[list[str]]:
    """Instructions per stage, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def test_compose_runs_localstack_the_api_and_the_worker() -> None:
    services = _compose()["services"]

    assert set(services) == {"localstack", "api", "worker"}
    assert services["localstack"]["build"] == {
        "context": ".",
        "dockerfile": "localstack/Dockerfile",
    }
    assert services["api"]["build"] == services["worker"]["build"] == "."
    assert services["api"]["command"][0] == "serve"
    assert services["worker"]["command"] == ["worker"]
    for name in ("api", "worker"):
        assert services[name]["depends_on"] == {"localstack": {"condition": "service_healthy"}}
        assert services[name]["security_opt"] == ["no-new-privileges:true"]
        assert services[name]["read_only"] is True
    assert "init/ready" in " ".join(services["localstack"]["healthcheck"]["test"])
    # The worker's healthcheck asks the port its settings open for /health.
    worker_port = _environment("worker", {})["IMAGE_SERVICE_WORKER_METRICS_PORT"]
    assert f"127.0.0.1:{worker_port}/health" in " ".join(services["worker"]["healthcheck"]["test"])
    for service in services.values():  # published on loopback only
        assert all(str(port).startswith("127.0.0.1:") for port in service.get("ports", []))


def test_the_drain_fits_in_compose_stop_grace_period() -> None:
    grace = Settings().shutdown_grace_seconds
    for name in ("api", "worker"):
        period = _compose()["services"][name]["stop_grace_period"]
        assert int(period.rstrip("s")) > grace


@pytest.mark.parametrize("service", ["api", "worker"])
def test_the_services_environment_is_valid_settings_naming_only_real_settings(
    service: str,
) -> None:
    environment = _environment(service, {"IMAGE_SERVICE_JWT_SECRET": "x" * 40})

    assert {name for name in environment if name.startswith(PREFIX)} <= SETTING_NAMES
    assert environment["AWS_DEFAULT_REGION"]  # botocore's name for it
    settings = Settings.from_env(environment)
    assert settings.s3_public_url == "http://localhost:4566"
    assert settings.cors_origins == ("http://localhost:8080",)


def test_compose_refuses_to_start_without_a_jwt_secret() -> None:
    raw = _compose()["services"]["api"]["environment"]["IMAGE_SERVICE_JWT_SECRET"]

    assert raw.startswith("${IMAGE_SERVICE_JWT_SECRET:?")  # compose stops with the message


def test_the_hook_provisions_what_the_api_uses() -> None:
    hook = Settings.from_env(_environment("localstack", {}), verifies_tokens=False)
    api = Settings.from_env(_environment("api", {"IMAGE_SERVICE_JWT_SECRET": "x" * 40}))

    for name in ("bucket", "table", "queue_name", "cors_origins"):
        assert getattr(hook, name) == getattr(api, name)


def test_the_image_is_slim_non_root_with_a_healthcheck() -> None:
    *_, final = _dockerfile_stages(ROOT / "Dockerfile")
    instructions = {line.split()[0].upper(): line for line in final}

    assert instructions["FROM"].split()[1].endswith("-slim")
    user = instructions["USER"].split()[1].split(":")[0]
    assert user not in {"0", "root"}
    assert "/health" in instructions["HEALTHCHECK"]
    assert instructions["EXPOSE"].split()[1] == str(Settings().port)
    assert not any("apt-get" in line or "gcc" in line for line in final)


def test_every_image_pins_its_base() -> None:
    for dockerfile in (ROOT / "Dockerfile", ROOT / "localstack" / "Dockerfile"):
        for stage in _dockerfile_stages(dockerfile):
            image = stage[0].split()[1]
            assert ":" in image
            assert not image.endswith(":latest"), dockerfile


def test_what_the_dockerfiles_copy_exists_and_is_in_the_build_context() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignored[ignored.index("*") :]  # everything is excluded but what is named
    included = {line[1:].rstrip("/") for line in ignored if line.startswith("!")}
    for dockerfile in (ROOT / "Dockerfile", ROOT / "localstack" / "Dockerfile"):
        for stage in _dockerfile_stages(dockerfile):
            for line in stage:
                if line.startswith("COPY ") and "--from=" not in line:
                    for source in line.split()[1:-1]:
                        assert (ROOT / source).exists(), source
                        assert source.split("/")[0] in included, source
    assert HOOK.stat().st_mode & stat.S_IXUSR, "LocalStack runs only executable hooks"


async def _run_hook(environment: dict[str, str]) -> str:
    process = await asyncio.create_subprocess_exec(
        "bash",
        str(HOOK),
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, output.decode()
    return output.decode()


async def test_the_init_hook_provisions_localstack(
    localstack_endpoint: str, moto_endpoint: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:10]
    settings = {
        "IMAGE_SERVICE_BUCKET": f"hooked-{suffix}",
        "IMAGE_SERVICE_TABLE": f"hooked-{suffix}",
        "IMAGE_SERVICE_QUEUE_NAME": f"hooked-{suffix}",
        "IMAGE_SERVICE_CORS_ORIGINS": "http://localhost:8080",
    }
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "IMAGE_SERVICE_CLI": str(ROOT / ".venv" / "bin" / "image-service"),
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": REGION,  # the hook passes it on as AWS_DEFAULT_REGION
        # Inside the container everything is LocalStack; here its DynamoDB is moto's.
        "AWS_ENDPOINT_URL": localstack_endpoint,
        "AWS_ENDPOINT_URL_DYNAMODB": moto_endpoint,
        **settings,
    }

    await _run_hook(environment)
    output = await _run_hook(environment)  # LocalStack may run it on every start

    assert "are ready" in output
    credentials = {"aws_access_key_id": ACCESS_KEY, "aws_secret_access_key": SECRET_KEY}
    import boto3

    def client(service: str, endpoint: str) -> Any:
        return boto3.client(service, endpoint_url=endpoint, region_name=REGION, **credentials)

    s3, sqs = client("s3", localstack_endpoint), client("sqs", localstack_endpoint)
    bucket = settings["IMAGE_SERVICE_BUCKET"]
    cors = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert [rule["AllowedOrigins"] for rule in cors] == [["http://localhost:8080"]]
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert [rule["ID"] for rule in rules] == ["expire-abandoned-uploads"]
    table = emulator_client("dynamodb", moto_endpoint).describe_table(
        TableName=settings["IMAGE_SERVICE_TABLE"]
    )["Table"]
    assert {index["IndexName"] for index in table["GlobalSecondaryIndexes"]} == {
        "by_upload_time",
        "by_status",
        "by_tag",
        "by_attention",
        "by_taken",
        "by_trash",
    }

    # The notification is real: an object under incoming/ puts an event on the queue.
    queue = sqs.get_queue_url(QueueName=settings["IMAGE_SERVICE_QUEUE_NAME"])["QueueUrl"]
    s3.put_object(Bucket=bucket, Key="incoming/alice/some-image", Body=b"bytes")
    events: list[dict[str, Any]] = []
    for _ in range(10):
        answer = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1, MaxNumberOfMessages=10)
        events += [json.loads(m["Body"]) for m in answer.get("Messages", [])]
        if any("Records" in event for event in events):
            break
    keys = [r["s3"]["object"]["key"] for e in events for r in e.get("Records", [])]
    assert keys == ["incoming/alice/some-image"]
