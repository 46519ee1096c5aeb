"""DynamoDB reads are decoded as plain JSON instead of through botocore's model-driven parser:
the same answer for every type the service stores, the original service's sets included."""

from __future__ import annotations

import json
from typing import Any

import botocore.session
import pytest
from botocore.parsers import create_parser

from image_service.storage.clients import PLAIN_JSON_READS, read_dynamodb_answers_as_json

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
ANSWERS = {
    "Query": {"Items": [ITEM, ITEM], "Count": 2, "ScannedCount": 2, "LastEvaluatedKey": {
        "user_id": {"S": "alice"}, "image_id": {"S": "x"}}},
    "Scan": {"Items": [ITEM], "Count": 1, "ScannedCount": 7},
    "GetItem": {"Item": ITEM},
}  # fmt: skip
MODEL = botocore.session.get_session().get_service_model("dynamodb")


def _botocore(operation: str, body: bytes) -> dict[str, Any]:
    response = {"status_code": 200, "headers": {}, "body": body}
    parsed: dict[str, Any] = create_parser("json").parse(
        response, MODEL.operation_model(operation).output_shape
    )
    parsed.pop("ResponseMetadata", None)
    return parsed


@pytest.mark.parametrize("operation", PLAIN_JSON_READS)
def test_a_read_decodes_as_botocore_parses_it(operation: str) -> None:
    body = json.dumps(ANSWERS[operation]).encode()
    response = {"status_code": 200, "headers": {}, "body": body}
    plain = read_dynamodb_answers_as_json(MODEL.operation_model(operation), response)
    assert plain == _botocore(operation, body)


def test_errors_and_writes_are_left_to_botocore() -> None:
    error = {"status_code": 400, "headers": {}, "body": b'{"__type": "ValidationException"}'}
    assert read_dynamodb_answers_as_json(MODEL.operation_model("Query"), error) is None
    write = {"status_code": 200, "headers": {}, "body": b"{}"}
    assert read_dynamodb_answers_as_json(MODEL.operation_model("PutItem"), write) is None
