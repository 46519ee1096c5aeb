"""The service signs URLs itself (image_service/storage/presign.py), for speed. Every kind of URL
and POST it hands out must be exactly what botocore would have produced: compared here byte for
byte, with botocore's clock pinned to the signer's, across key shapes, both addressing styles,
temporary credentials and a change of day."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import boto3
import pytest
from botocore.config import Config

from image_service.storage.presign import Presigner
from image_service.storage.sigv4 import Credentials

BUCKET = "bkt"
KEYS = [
    "incoming/alice/4b6f3c0e-8d8a-4f57-9a7e-0d6b5f1f2a11",
    "incoming/a%40b%2Ec%20d/1",  # a percent-encoded user id, as the key layout makes them
    "images/u/i/thumb.webp",
    "ü/é*'()!$&,;=:@+ ~x",
]


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 26, 23, 59, 58, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["path", "virtual"])
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Presigner, Clock]]:
    """A botocore client and a presigner learned from the same address, on one pinned clock."""
    token = "FwoGZXIvYXdzE+/token=" if request.param == "virtual" else None
    client = boto3.client(
        "s3",
        region_name="eu-west-1" if token else "us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        aws_session_token=token,
        endpoint_url=None if token else "http://127.0.0.1:4566",
        config=Config(signature_version="s3v4", s3={"addressing_style": request.param}),
    )
    clock = Clock()

    async def credentials() -> Credentials:
        return Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)

    with (
        mock.patch("botocore.auth.get_current_datetime", side_effect=clock),
        mock.patch("botocore.signers.get_current_datetime", side_effect=clock),
    ):
        probe = client.generate_presigned_url(
            "get_object", Params={"Bucket": BUCKET, "Key": "presign-probe"}
        )
        post = client.generate_presigned_post(BUCKET, "presign-probe")
        presigner = Presigner(
            object_url_prefix=probe.split("?")[0].removesuffix("presign-probe"),
            post_url=post["url"],
            region=client.meta.region_name,
            credentials=credentials,
            clock=clock,
        )
        yield client, presigner, clock


@pytest.mark.parametrize("key", KEYS)
async def test_upload_urls_equal_botocore(pair: tuple[Any, Presigner, Clock], key: str) -> None:
    client, presigner, clock = pair
    for extra in (
        {},
        {
            "ContentLength": 1234,
            "ChecksumSHA256": "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=",
            "IfNoneMatch": "*",
        },
    ):
        for _ in range(2):  # a second URL reuses the cached signing key; then the day turns
            expected = client.generate_presigned_url(
                "put_object",
                Params={"Bucket": BUCKET, "Key": key, "ContentType": "image/jpeg", **extra},
                ExpiresIn=300,
            )
            headers = {"Content-Type": "image/jpeg"}
            if extra:
                headers |= {
                    "Content-Length": "1234",
                    "x-amz-checksum-sha256": extra["ChecksumSHA256"],
                    "If-None-Match": "*",
                }
            assert await presigner.url("PUT", key, expires_in=300, headers=headers) == expected
            clock.now += timedelta(seconds=3)


@pytest.mark.parametrize("key", KEYS)
async def test_download_urls_equal_botocore(pair: tuple[Any, Presigner, Clock], key: str) -> None:
    client, presigner, _ = pair
    disposition = "attachment; filename=\"caf_ .jpg\"; filename*=UTF-8''caf%C3%A9%20.jpg"
    expected = client.generate_presigned_url(
        "get_object",
        Params={
            "Bucket": BUCKET,
            "Key": key,
            "ResponseContentType": "image/webp",
            "ResponseContentDisposition": disposition,
        },
        ExpiresIn=120,
    )
    signed = await presigner.url(
        "GET",
        key,
        expires_in=120,
        params=(
            ("response-content-type", "image/webp"),
            ("response-content-disposition", disposition),
        ),
    )
    assert signed == expected


async def test_post_policies_equal_botocore(pair: tuple[Any, Presigner, Clock]) -> None:
    client, presigner, _ = pair
    fields = {"Content-Type": "image/png", "x-amz-checksum-sha256": "abc="}
    conditions: list[Any] = [
        {"Content-Type": "image/png"},
        ["content-length-range", 1, 20971520],
        {"x-amz-checksum-sha256": "abc="},
    ]
    expected = client.generate_presigned_post(
        BUCKET, KEYS[1], Fields=dict(fields), Conditions=list(conditions), ExpiresIn=300
    )
    url, signed = await presigner.post(
        BUCKET, KEYS[1], expires_in=300, fields=fields, conditions=conditions
    )
    assert url == expected["url"]
    assert list(signed.items()) == list(expected["fields"].items()), "same fields, same order"
