"""schemathesis against the service's own OpenAPI document: generated requests (valid and
invalid) for every operation, seeded and bounded. Zero 5xx, and every response must match its
documented schema. The service runs as a real `image-service serve` process on moto."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from image_service.embedded import free_port
from tests.conftest import AWS_SECRET, JWT_SECRET, REGION, token

EXAMPLES_PER_OPERATION = 40
STARTUP_SECONDS = 30


def _serve_environment(moto_endpoint: str, port: int) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:12]
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IMAGE_SERVICE_"))}
    return {
        **keep,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "IMAGE_SERVICE_JWT_SECRET": JWT_SECRET,
        "IMAGE_SERVICE_BUCKET": f"fuzz-{suffix}",
        "IMAGE_SERVICE_TABLE": f"fuzz-{suffix}",
        "IMAGE_SERVICE_PORT": str(port),
        "IMAGE_SERVICE_UPLOAD_BURST": "100000",
        "IMAGE_SERVICE_LOG_LEVEL": "WARNING",
    }


@pytest.fixture(scope="module")
def fuzz_server(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = _serve_environment(moto_endpoint, port)
    command = [sys.executable, "-m", "image_service.cli"]
    subprocess.run([*command, "init"], env=env, check=True, capture_output=True)
    log_path = Path(tmp_path_factory.mktemp("fuzz")) / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + STARTUP_SECONDS
            while True:
                try:
                    with urllib.request.urlopen(f"{base}/health", timeout=1):
                        break
                except OSError:
                    assert process.poll() is None, log_path.read_text()
                    assert time.monotonic() < deadline, "serve did not start"
                    time.sleep(0.1)
            yield base
        finally:
            process.terminate()
            process.wait(timeout=20)
    # Anything the server logged as an unhandled error is a failure even if it answered.
    assert "Traceback" not in log_path.read_text(), log_path.read_text()


MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]


@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
def test_every_operation_holds_its_contract(fuzz_server: str, mode: GenerationMode) -> None:
    # Driven by hand rather than through schemathesis' pytest plugin, which pytest 9 breaks.
    schema = schemathesis.openapi.from_url(f"{fuzz_server}/docs/openapi.json")
    headers = {"Authorization": f"Bearer {token('fuzzer', ttl=3600)}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 10

    for operation in operations:
        inputs = len(operation.query) + len(operation.path_parameters) + len(operation.body)
        if mode is GenerationMode.NEGATIVE and not inputs:
            continue  # /health and /ready take nothing that could be wrong

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            derandomize=True,  # the same examples every run: a failure reproduces
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def holds_contract(case: Any) -> None:
            case.call_and_validate(
                headers=headers,
                checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
            )

        holds_contract()
