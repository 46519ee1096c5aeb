"""An independent SigV4 check of presigned S3 URLs and POST policies.

moto enforces no signature, so the tests recompute each one here from the AWS specification,
without botocore, and compare: a URL whose signature does not cover exactly the headers the API
told the client to send fails.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str = "s3") -> bytes:
    key = _hmac(f"AWS4{secret}".encode(), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, "aws4_request")


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def expected_signature(method: str, url: str, headers: dict[str, str], secret: str) -> str:
    parts = urlsplit(url)
    query = query_of(url)
    credential = query["X-Amz-Credential"].split("/")
    _, date, region, service, _ = credential
    signed_names = query["X-Amz-SignedHeaders"].split(";")
    all_headers = {name.lower(): value.strip() for name, value in headers.items()}
    all_headers["host"] = parts.netloc
    canonical_headers = "".join(f"{name}:{all_headers[name]}\n" for name in signed_names)
    canonical_query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
        for k, v in sorted(query.items())
        if k != "X-Amz-Signature"
    )
    canonical_request = "\n".join(
        [
            method,
            parts.path,
            canonical_query,
            canonical_headers,
            ";".join(signed_names),
            "UNSIGNED-PAYLOAD",
        ]
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        [
            ALGORITHM,
            query["X-Amz-Date"],
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    return hmac.new(
        signing_key(secret, date, region, service), string_to_sign.encode(), hashlib.sha256
    ).hexdigest()


def url_signature_valid(method: str, url: str, headers: dict[str, str], secret: str) -> bool:
    return hmac.compare_digest(
        query_of(url)["X-Amz-Signature"], expected_signature(method, url, headers, secret)
    )


def decode_policy(fields: dict[str, str]) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.b64decode(fields["policy"]))
    return decoded


def policy_signature_valid(fields: dict[str, str], secret: str) -> bool:
    _, date, region, service, _ = fields["x-amz-credential"].split("/")
    expected = hmac.new(
        signing_key(secret, date, region, service), fields["policy"].encode(), hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(fields["x-amz-signature"], expected)


def signed_at(url: str) -> datetime:
    return datetime.strptime(query_of(url)["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
