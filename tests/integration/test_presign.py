"""What the presigned URLs really grant. moto checks none of it, so every claim is decoded and
the signatures recomputed here from the SigV4 specification (tests/sigv4.py)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote, urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests import images
from tests.integration.conftest import AWS_SECRET, REGION, Api, MakeApi
from tests.sigv4 import (
    decode_policy,
    policy_signature_valid,
    query_of,
    signed_at,
    url_signature_valid,
)


def _key_of(url: str, bucket: str) -> str:
    path = unquote(urlsplit(url).path)
    prefix = f"/{bucket}/"
    assert path.startswith(prefix)
    return path[len(prefix) :]


async def test_put_url_is_sigv4_scoped_to_one_key_type_and_expiry(api: Api) -> None:
    upload = await api.upload_url(user="alice", content_type="image/png")
    url = upload["upload_url"]
    query = query_of(url)
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert "Signature" not in query, "no SigV2"
    assert "AWSAccessKeyId" not in query, "no SigV2"
    _, _, region, service, terminator = query["X-Amz-Credential"].split("/")
    assert (region, service, terminator) == (REGION, "s3", "aws4_request")
    assert query["X-Amz-Expires"] == "300"
    assert query["X-Amz-SignedHeaders"] == "content-type;host"
    assert _key_of(url, api.settings.bucket) == f"incoming/alice/{upload['image_id']}"

    issued = datetime.fromisoformat(upload["expires_at"].replace("Z", "+00:00"))
    assert issued - signed_at(url).replace(tzinfo=UTC) == pytest.approx(
        timedelta(seconds=300), abs=timedelta(seconds=2)
    )

    assert url_signature_valid("PUT", url, upload["headers"], AWS_SECRET)
    # The checker itself must be able to fail: another type, method or secret breaks it.
    assert not url_signature_valid("PUT", url, {"Content-Type": "text/html"}, AWS_SECRET)
    assert not url_signature_valid("GET", url, upload["headers"], AWS_SECRET)
    assert not url_signature_valid("PUT", url, upload["headers"], "another-secret")


async def test_put_url_with_size_signs_length_and_refuses_overwrite(api: Api) -> None:
    upload = await api.upload_url(content_type="image/jpeg", size=1234)
    query = query_of(upload["upload_url"])
    assert query["X-Amz-SignedHeaders"] == "content-length;content-type;host;if-none-match"
    assert url_signature_valid("PUT", upload["upload_url"], upload["headers"], AWS_SECRET)
    assert not url_signature_valid(
        "PUT", upload["upload_url"], {**upload["headers"], "Content-Length": "1235"}, AWS_SECRET
    )


async def test_url_expiry_follows_the_setting(make_api: MakeApi) -> None:
    api = await make_api(upload_url_expiry=60, download_url_expiry=30)
    upload = await api.upload_url()
    assert query_of(upload["upload_url"])["X-Amz-Expires"] == "60"
    assert await api.send_to_s3(upload, images.jpeg()) == 200
    await api.call("POST", f"/images/{upload['image_id']}/complete")
    await api.processed(upload["image_id"])
    status, download, _ = await api.call("GET", f"/images/{upload['image_id']}/download")
    assert status == 200
    assert query_of(download["download_url"])["X-Amz-Expires"] == "30"


async def test_user_ids_cannot_escape_their_key_prefix(api: Api) -> None:
    for user, prefix in [
        ("../bob", "%2E%2E%2Fbob"),
        ("a/b", "a%2Fb"),
        ("auth0|abc", "auth0%7Cabc"),
        ("..", "%2E%2E"),
    ]:
        upload = await api.upload_url(user=user)
        assert (
            _key_of(upload["upload_url"], api.settings.bucket)
            == f"incoming/{prefix}/{upload['image_id']}"
        )


async def test_post_policy_pins_key_type_length_and_expiry(api: Api) -> None:
    upload = await api.upload_url(content_type="image/webp", method="POST")
    fields = upload["fields"]
    assert fields["x-amz-algorithm"] == "AWS4-HMAC-SHA256"
    assert fields["key"] == f"incoming/alice/{upload['image_id']}"
    policy = decode_policy(fields)
    conditions = policy["conditions"]
    assert {"bucket": api.settings.bucket} in conditions
    assert {"key": fields["key"]} in conditions
    assert {"Content-Type": "image/webp"} in conditions
    assert ["content-length-range", 1, api.settings.max_upload_bytes] in conditions
    expiration = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
    assert expiration - datetime.now(UTC) <= timedelta(seconds=300)
    assert expiration - datetime.now(UTC) > timedelta(seconds=290)
    assert policy_signature_valid(fields, AWS_SECRET)
    assert not policy_signature_valid(
        {**fields, "policy": fields["policy"][:-4] + "AAAA"}, AWS_SECRET
    )


async def test_post_policy_with_size_allows_exactly_that_size(api: Api) -> None:
    upload = await api.upload_url(content_type="image/png", method="POST", size=4321)
    assert ["content-length-range", 4321, 4321] in decode_policy(upload["fields"])["conditions"]


async def test_download_url_is_short_signed_and_forces_type_and_attachment(api: Api) -> None:
    upload, _, _ = await api.upload(images.png(), content_type="image/png", filename='x";.html')
    status, download, _ = await api.call("GET", f"/images/{upload['image_id']}/download")
    assert status == 200
    url = download["download_url"]
    query = query_of(url)
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert query["X-Amz-Expires"] == "300"
    assert query["response-content-type"] == "image/png"
    assert query["response-content-disposition"].startswith('attachment; filename="x.png"')
    assert _key_of(url, api.settings.bucket) == f"images/alice/{upload['image_id']}/original"
    assert url_signature_valid("GET", url, {}, AWS_SECRET)


async def test_public_s3_url_is_used_for_signing(make_api: MakeApi) -> None:
    api = await make_api(s3_public_url="http://images.example.test:4566")
    upload = await api.upload_url()
    assert upload["upload_url"].startswith("http://images.example.test:4566/")
    assert url_signature_valid("PUT", upload["upload_url"], upload["headers"], AWS_SECRET)


async def test_post_policy_signature_matches_botocores_own_signer(api: Api) -> None:
    """LocalStack does not verify POST policy signatures, so botocore's SigV4 code is the
    reference: the service's policy must be signed exactly as botocore signs a policy."""
    upload = await api.upload_url(content_type="image/gif", method="POST", size=777)
    fields = upload["fields"]
    credentials = Credentials(os.environ["AWS_ACCESS_KEY_ID"], AWS_SECRET)
    request = AWSRequest()
    request.context["timestamp"] = fields["x-amz-date"]
    assert (
        SigV4Auth(credentials, "s3", REGION).signature(fields["policy"], request)
        == fields["x-amz-signature"]
    )
    assert fields["x-amz-credential"].startswith(f"{os.environ['AWS_ACCESS_KEY_ID']}/")
    policy = decode_policy(fields)
    assert ["content-length-range", 777, 777] in policy["conditions"]
    assert {"Content-Type": "image/gif"} in policy["conditions"]
    assert {"x-amz-algorithm": "AWS4-HMAC-SHA256"} in policy["conditions"]
