"""The service speaks DynamoDB's JSON protocol itself (image_service/storage/dynamo/wire.py), for
speed. What it sends must be signed exactly as botocore signs it, what it hands back must be what
botocore's parser makes of the same answer, and it must retry what botocore's standard mode
retries, and nothing else. The answers come from a real HTTP server on loopback."""

from __future__ import annotations

import json
import zlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import aiohttp
import botocore.session
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotocoreCredentials
from botocore.exceptions import ClientError
from botocore.parsers import create_parser

from image_service.storage.dynamo.wire import DynamoDBWire
from image_service.storage.sigv4 import Credentials

NOW = datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC)
ACCESS_KEY, SECRET_KEY = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
ITEM = {
    "user_id": {"S": "alice"},
    "image_id": {"S": "6f1c2b9e-3d4a-4b5c-8d7e-9f0a1b2c3d4e"},
    "revision": {"N": "3"},
    "tags": {"L": [{"S": "cat"}, {"S": "émile ☃"}]},
    "variants": {"L": [{"M": {"name": {"S": "thumb"}, "width": {"N": "256"}}}]},
    "legacy_tags": {"SS": ["a", "b"]},
    "legacy_numbers": {"NS": ["1", "2.5"]},
    "flag": {"BOOL": True},
    "nothing": {"NULL": True},
}
ANSWERS: dict[str, dict[str, Any]] = {
    "Query": {"Items": [ITEM, ITEM], "Count": 2, "ScannedCount": 2, "LastEvaluatedKey": {
        "user_id": {"S": "alice"}, "image_id": {"S": "x"}}},
    "Scan": {"Items": [ITEM], "Count": 1, "ScannedCount": 7},
    "GetItem": {"Item": ITEM},
    "BatchWriteItem": {"UnprocessedItems": {"t": [{"PutRequest": {"Item": ITEM}}]}},
    "PutItem": {},
}  # fmt: skip
MODEL = botocore.session.get_session().get_service_model("dynamodb")


def wire(
    endpoint_url: str, session: aiohttp.ClientSession, token: str | None = None
) -> DynamoDBWire:
    async def credentials() -> Credentials:
        return Credentials(ACCESS_KEY, SECRET_KEY, token)

    return DynamoDBWire(
        endpoint_url=endpoint_url,
        region="eu-west-1",
        credentials=credentials,
        session=session,
        max_attempts=3,
        user_agent="image-service/test app/image-service",
        clock=lambda: NOW,
        jitter=lambda: 0.0,  # no backoff sleeps in tests; the attempts are what is counted
    )


@pytest.mark.parametrize(
    ("endpoint_url", "token"),
    [
        ("https://dynamodb.eu-west-1.amazonaws.com", None),
        ("https://dynamodb.eu-west-1.amazonaws.com:443", "FwoGZXIvYXdzE+/token="),
        ("http://127.0.0.1:4566", None),
        ("http://[::1]:8000/", "t"),
        # An endpoint under a path (a gateway's): the path is part of what is signed.
        ("https://gateway.example.test/dynamodb", None),
    ],
)
async def test_requests_are_signed_as_botocore_signs_them(
    endpoint_url: str, token: str | None
) -> None:
    body = json.dumps({"TableName": "images", "Key": {"user_id": {"S": "ü"}}}).encode()
    async with aiohttp.ClientSession() as session:
        ours = await wire(endpoint_url, session, token).signed_headers("GetItem", body)

    request = AWSRequest(
        method="POST",
        url=endpoint_url.rstrip("/") + "/",
        data=body,
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "DynamoDB_20120810.GetItem",
        },
    )
    signer = SigV4Auth(BotocoreCredentials(ACCESS_KEY, SECRET_KEY, token), "dynamodb", "eu-west-1")
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)):
        signer.add_auth(request)
    assert ours["authorization"] == request.headers["Authorization"]
    assert ours["x-amz-date"] == request.headers["X-Amz-Date"]
    assert ours.get("x-amz-security-token") == request.headers.get("X-Amz-Security-Token")


# A DynamoDB stand-in on loopback: answers each attempt from a script, and records the attempts.
Script = list[Callable[[web.Request], Awaitable[web.StreamResponse]]]


def answer(body: dict[str, Any], status: int = 200, crc32: int | None = None) -> Any:
    async def respond(request: web.Request) -> web.StreamResponse:
        payload = json.dumps(body).encode()
        checksum = zlib.crc32(payload) if crc32 is None else crc32
        return web.Response(
            status=status,
            body=payload,
            content_type="application/x-amz-json-1.0",
            headers={"x-amz-crc32": str(checksum), "x-amzn-RequestId": "req-1"},
        )

    return respond


def refusal(code: str, status: int = 400, **members: Any) -> Any:
    body = {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": "no", **members}
    return answer(body, status)


async def dropped(request: web.Request) -> web.StreamResponse:
    assert request.transport is not None
    request.transport.close()  # the connection dies before an answer
    return web.Response()


class Stand:
    def __init__(self, script: Script) -> None:
        self.script = list(script)
        self.attempts: list[tuple[str, dict[str, Any]]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        operation = request.headers["X-Amz-Target"].rpartition(".")[2]
        self.attempts.append((operation, json.loads(await request.read())))
        return await self.script.pop(0)(request)


async def call(script: Script, operation: str = "GetItem") -> tuple[Stand, Any, list[Any]]:
    """Runs one call against a stand playing ``script``: (stand, answer or error, observed)."""
    stand = Stand(script)
    app = web.Application()
    app.router.add_post("/", stand.handle)
    observed: list[Any] = []
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        client = wire(str(server.make_url("/")), session)
        client.observe(lambda op, outcome: observed.append((op, dict(outcome))))
        try:
            outcome: Any = await client.call(operation, {"TableName": "images"})
        except (ClientError, aiohttp.ClientError) as exc:
            outcome = exc
    return stand, outcome, observed


def botocore_parse(operation: str, body: bytes) -> dict[str, Any]:
    response = {"status_code": 200, "headers": {}, "body": body}
    shape = MODEL.operation_model(operation).output_shape
    parsed: dict[str, Any] = create_parser("json").parse(response, shape)
    parsed.pop("ResponseMetadata", None)
    return parsed


@pytest.mark.parametrize("operation", ANSWERS)
async def test_an_answer_is_what_botocores_parser_makes_of_it(operation: str) -> None:
    stand, outcome, observed = await call([answer(ANSWERS[operation])], operation)
    metadata = outcome.pop("ResponseMetadata")
    assert outcome == botocore_parse(operation, json.dumps(ANSWERS[operation]).encode())
    assert metadata == {"RequestId": "req-1", "HTTPStatusCode": 200, "RetryAttempts": 0}
    assert stand.attempts == [(operation, {"TableName": "images"})]
    assert [op for op, _ in observed] == [operation]


async def test_a_refusal_is_botocores_client_error_with_the_bodys_members() -> None:
    reasons = [{"Code": "None"}, {"Code": "ConditionalCheckFailed", "Message": "x"}]
    stand, outcome, observed = await call(
        [refusal("TransactionCanceledException", CancellationReasons=reasons)],
        "TransactWriteItems",
    )
    assert isinstance(outcome, ClientError)
    assert outcome.response["Error"] == {"Code": "TransactionCanceledException", "Message": "no"}
    assert outcome.response["CancellationReasons"] == reasons  # type: ignore[typeddict-item]
    assert outcome.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert outcome.operation_name == "TransactWriteItems"
    assert len(stand.attempts) == 1  # a refusal of the request itself is not retried
    assert observed[0][1]["Error"]["Code"] == "TransactionCanceledException"


@pytest.mark.parametrize(
    "code", ["ConditionalCheckFailedException", "ValidationException", "ResourceNotFoundException"]
)
async def test_refusals_are_not_retried(code: str) -> None:
    stand, outcome, _ = await call([refusal(code)])
    assert isinstance(outcome, ClientError)
    assert outcome.response["Error"]["Code"] == code
    assert len(stand.attempts) == 1


@pytest.mark.parametrize(
    "failure",
    [
        refusal("ProvisionedThroughputExceededException"),
        refusal("ThrottlingException"),
        refusal("RequestLimitExceeded"),
        refusal("InternalServerError", status=500),
        answer({"message": "unavailable"}, status=503),
        answer(ANSWERS["GetItem"], crc32=12345),  # corrupted on the way
        dropped,
    ],
    ids=["throughput", "throttling", "limit", "500", "503", "crc32", "dropped"],
)
async def test_what_botocore_retries_is_retried(failure: Any) -> None:
    stand, outcome, observed = await call([failure, failure, answer(ANSWERS["GetItem"])])
    assert outcome["Item"] == ITEM
    assert outcome["ResponseMetadata"]["RetryAttempts"] == 2
    assert len(stand.attempts) == 3
    assert len(observed) == 1  # one call, however many attempts


async def test_after_the_last_attempt_the_failure_is_raised() -> None:
    """max_attempts=3 read as botocore reads its retries config: three retries, four calls
    (tests/integration/test_transports.py counts botocore's own on the wire)."""
    throttled = refusal("ThrottlingException")
    stand, outcome, observed = await call([throttled] * 4)
    assert isinstance(outcome, ClientError)
    assert outcome.response["Error"]["Code"] == "ThrottlingException"
    assert len(stand.attempts) == 4
    assert observed[0][1]["Error"]["Code"] == "ThrottlingException"

    stand, outcome, _ = await call([dropped] * 4)
    assert isinstance(outcome, aiohttp.ClientError)
    assert len(stand.attempts) == 4


async def test_an_answer_that_is_not_json_is_a_client_error_naming_the_status() -> None:
    async def proxy_page(request: web.Request) -> web.StreamResponse:
        return web.Response(status=403, text="<html>denied by a proxy</html>")

    _, outcome, _ = await call([proxy_page])
    assert isinstance(outcome, ClientError)
    assert outcome.response["Error"]["Code"] == "403"
    assert "denied" in outcome.response["Error"]["Message"]


async def test_every_attempt_of_a_transaction_carries_one_idempotency_token() -> None:
    """As botocore fills ClientRequestToken: a retry after a lost answer is the same write."""
    conflict = refusal("InternalServerError", 500)
    stand, outcome, _ = await call([dropped, conflict, answer({})], "TransactWriteItems")
    assert outcome["ResponseMetadata"]["RetryAttempts"] == 2
    tokens = {body.get("ClientRequestToken") for _, body in stand.attempts}
    assert len(stand.attempts) == 3
    assert len(tokens) == 1
    assert None not in tokens


async def test_two_transactions_get_two_tokens() -> None:
    first, _, _ = await call([answer({})], "TransactWriteItems")
    second, _, _ = await call([answer({})], "TransactWriteItems")
    assert first.attempts[0][1]["ClientRequestToken"] != second.attempts[0][1]["ClientRequestToken"]


async def test_the_user_agent_names_the_service_and_is_not_signed() -> None:
    async with aiohttp.ClientSession() as session:
        headers = await wire("http://127.0.0.1:4566", session).signed_headers("GetItem", b"{}")
    assert "app/image-service" in headers["user-agent"]
    assert "user-agent" not in headers["authorization"]


def test_credentials_never_show_their_secret() -> None:
    shown = repr(Credentials(ACCESS_KEY, SECRET_KEY, "session-token"))
    assert ACCESS_KEY in shown
    assert SECRET_KEY not in shown
    assert "session-token" not in shown
