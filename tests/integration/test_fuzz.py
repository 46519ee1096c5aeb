"""schemathesis against the service's own OpenAPI document: generated requests (valid and
invalid) for every operation, seeded and bounded. Zero 5xx, and every response must match its
documented schema. The service runs as a real `image-service serve` process on moto."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from image_service.programs.embedded import free_port
from image_service.programs.processes import wait_until_answering
from tests.integration.conftest import AWS_SECRET, JWT_SECRET, REGION, token

# Per operation and mode: 37 operations, 2 modes, 25 each: 1,850 generated requests, about what
# 18 operations at 40 were, within the suite's time (the machines are shared and small).
EXAMPLES_PER_OPERATION = 25
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
    command = [sys.executable, "-m", "image_service.programs.cli"]
    subprocess.run([*command, "init"], env=env, check=True, capture_output=True)
    log_path = Path(tmp_path_factory.mktemp("fuzz")) / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        base = f"http://127.0.0.1:{port}"
        try:
            asyncio.run(
                wait_until_answering(
                    f"{base}/health", within=STARTUP_SECONDS, exit_status=process.poll
                )
            )
            yield base
        finally:
            process.terminate()
            process.wait(timeout=20)
    # Anything the server logged as an unhandled error is a failure even if it answered.
    assert "Traceback" not in log_path.read_text(), log_path.read_text()


MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
# aiohttp's own limit on a request line: past it, its parser answers a plain-text 400 before the
# app runs (test_a_request_over_the_http_limits_is_a_4xx_and_nobody_else_notices, below).
_REQUEST_LINE_LIMIT = 8190


@schemathesis.check
def _content_type(ctx: Any, response: Any, case: Any) -> bool | None:
    """The documented content type, for every request aiohttp's parser lets through."""
    request = response.request
    line = f"{request.method} {request.path_url} HTTP/1.1"
    if len(line.encode()) > _REQUEST_LINE_LIMIT:
        assert 400 <= response.status_code < 500
        return True
    return content_type_conformance(ctx, response, case)


@pytest.mark.long
@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
def test_every_operation_holds_its_contract(fuzz_server: str, mode: GenerationMode) -> None:
    # Driven by hand rather than through schemathesis' pytest plugin, which pytest 9 breaks.
    schema = schemathesis.openapi.from_url(f"{fuzz_server}/docs/openapi.json")
    headers = {"Authorization": f"Bearer {token('fuzzer', ttl=3600)}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 37

    for operation in operations:
        inputs = len(operation.query) + len(operation.path_parameters) + len(operation.body)
        if mode is GenerationMode.NEGATIVE and not inputs:
            continue  # /health and /ready take nothing that could be wrong
        if operation.path == "/events":
            # A stream: it answers 200 and then never ends. test_events.py covers its inputs.
            continue
        if mode is GenerationMode.NEGATIVE and operation.path.startswith(("/r/", "/s/r/", "/s/o/")):
            # A rendition URL's segments (a share link's too) are any text by design (whatever
            # does not match its signature is a 403): there is no invalid input to generate.
            # Positive mode sends them arbitrary segments, and test_renditions.py and
            # test_shares.py change each one.
            continue

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
                checks=[not_a_server_error, response_schema_conformance, _content_type],
            )

        holds_contract()


# -- hostile bodies and query strings, property-based ----------------------------------------------

# Text as hostile clients send it: any code point, lone surrogates and controls included, and
# the values that broke the service before (each drawn often, not left to chance).
_HOSTILE_TEXT = ["\ud800", "a\udfffb", "\x00", "\x1b[31m", "\x85", "\u2028", "x" * 1000]
_HOSTILE_NUMBERS = [2**64, 296308334625945798707878297600, -(2**80), 1e308, -0.0]
_ANY_TEXT = st.text(
    st.characters(codec=None, categories=None, exclude_categories=()), max_size=80
) | st.sampled_from(_HOSTILE_TEXT)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from(_HOSTILE_NUMBERS)
    | st.floats(allow_nan=False)
    | _ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_ANY_TEXT, inner, max_size=4),
    max_leaves=12,
)
_UPLOAD_FIELDS = [
    "content_type",
    "size",
    "tags",
    "description",
    "checksum_sha256",
    "filename",
    "method",
    "user_id",
    "part_size",
    "part_checksums",
    "if_exists",
    "callback_url",
]
_PATCH_FIELDS = ["tags", "description"]
_QUERY_NAMES = [
    "tag",
    "start_date",
    "end_date",
    "status",
    "limit",
    "cursor",
    "user_id",
    "redirect",
    "variant",
    "format",
]


# What a field gets: mostly the kind of value it takes (text, a list of text, a number), hostile
# within that kind, so that it passes the type check and meets the validators and what lies
# behind them; sometimes any JSON at all.
_FIELD_VALUES = st.one_of(
    _ANY_TEXT,
    st.lists(_ANY_TEXT, max_size=3),
    st.integers() | st.sampled_from(_HOSTILE_NUMBERS),
    _JSON,
)


def _bodies(names: list[str]) -> st.SearchStrategy[Any]:
    """Objects of the operation's own fields, mostly with a valid content type beside them,
    or any JSON at all."""
    known = st.dictionaries(st.sampled_from(names), _FIELD_VALUES, min_size=1, max_size=3)
    with_type = known.map(lambda body: {"content_type": "image/png", **body})
    return st.one_of(with_type, with_type, known, _JSON)


def _percent(text: str) -> str:
    # Lone surrogates go out as the bytes a careless encoder writes for them: not UTF-8.
    return urllib.parse.quote(text.encode("utf-8", "surrogatepass"), safe="")


# At most a few parameters: a request line past aiohttp's 8 KiB limit is refused before the app
# (tests/integration/test_hostile_input.py), so it would not reach what this probes.
_QUERIES = st.lists(
    st.tuples(st.sampled_from(_QUERY_NAMES) | _ANY_TEXT, _ANY_TEXT), max_size=3
).map(lambda pairs: "&".join(f"{_percent(name)}={_percent(value)}" for name, value in pairs))

_OPERATIONS = [
    ("POST", "/images/upload", _UPLOAD_FIELDS),
    ("GET", "/images", None),
    ("GET", "/images/{id}", None),
    ("PATCH", "/images/{id}", _PATCH_FIELDS),
    ("DELETE", "/images/{id}", None),
    ("POST", "/images/{id}/complete", None),
    ("GET", "/images/{id}/download", None),
    ("GET", "/images/{id}/parts", None),
    ("POST", "/images/check", ["checksums_sha256", "user_id"]),
]


def _request(base: str, method: str, path: str, body: bytes | None) -> tuple[int, str, bytes]:
    request = urllib.request.Request(f"{base}{path}", data=body, method=method)
    request.add_header("Authorization", f"Bearer {token('prober', ttl=3600)}")
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=15) as response:  # loopback
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        with error:  # it holds the connection
            return error.code, error.headers["Content-Type"], error.read()


@pytest.mark.parametrize("seed_value", [1, 2, 3])
def test_random_bodies_and_query_strings_never_get_a_5xx(fuzz_server: str, seed_value: int) -> None:
    status, _, answer = _request(
        fuzz_server, "POST", "/images/upload", json.dumps({"content_type": "image/png"}).encode()
    )
    assert status == 201, answer
    image_id = json.loads(answer)["image_id"]  # a real record for the per-image operations

    for method, template, fields in _OPERATIONS:
        path = template.replace("{id}", image_id)
        _probe(fuzz_server, method, path, _bodies(fields) if fields else st.none(), seed_value)()


def _probe(
    base: str, method: str, path: str, bodies: st.SearchStrategy[Any], seed_value: int
) -> Any:
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @seed(seed_value)
    @given(body=bodies, query=_QUERIES)
    def answers_within_contract(body: Any, query: str) -> None:
        target = path + (f"?{query}" if query else "")
        data = None if body is None else json.dumps(body).encode()
        status, content_type, answer = _request(base, method, target, data)
        assert status < 500, (method, target, body, answer)
        if status >= 400:
            assert content_type.startswith("application/json"), (method, target, answer)
            assert set(json.loads(answer)["error"]) == {"code", "message", "details"}

    return answers_within_contract


@pytest.mark.parametrize("where", ["request-line", "header"])
def test_a_request_over_the_http_limits_is_a_4xx_and_nobody_else_notices(
    fuzz_server: str, where: str
) -> None:
    """aiohttp refuses a request line or header over 8 KiB itself, before the app: a prompt
    400 (as text: no middleware runs), logged as one warning line, not an error's traceback
    (the fixture fails on any traceback in the log)."""
    oversized = "x" * 10_000
    path = f"/images?tag={oversized}" if where == "request-line" else "/images"
    request = urllib.request.Request(f"{fuzz_server}{path}")
    request.add_header("Authorization", f"Bearer {token('prober', ttl=3600)}")
    if where == "header":
        request.add_header("X-Padding", oversized)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)  # loopback
    refused.value.close()  # it holds the connection
    assert 400 <= refused.value.code < 500
    assert _request(fuzz_server, "GET", "/images", None)[0] == 200
