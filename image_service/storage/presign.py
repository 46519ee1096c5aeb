"""S3 presigned URLs and POST policies (SigV4): by botocore (the default), or computed here.

``BotocorePresigner`` asks the app's aiobotocore client for every URL and policy: botocore's
endpoint rules, credentials, hooks and signer, as any boto3 user gets them. ``Presigner`` below
is the opt-in direct path (``IMAGE_SERVICE_AWS_TRANSPORT=direct``):

botocore builds a whole request, resolves the endpoint through its rule engine and runs its
event hooks for every URL: about half a millisecond of CPU, most of an upload-URL request. The
signature itself is a few HMACs. This module does only that, with the day's signing key cached,
and produces exactly what botocore would: the same URL, byte for byte, and the same POST fields
(`tests/integration/test_presign.py` compares them for every kind of URL the service hands out).

What botocore still decides: the bucket's base URL (endpoint, path or virtual-host style),
learned once from one botocore presign at startup, and the credentials (refreshed by botocore's
provider chain when they are temporary).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from image_service.storage.sigv4 import ALGORITHM, CredentialSource, SigningKeys

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_PROBE_KEY = "presign-probe"


def _encode(value: str) -> str:
    """RFC 3986 encoding, as SigV4 and botocore's query strings use it."""
    return quote(value, safe="-_.~")


class UrlSigner(Protocol):
    """What the object store needs to hand out URLs: either presigner below."""

    @property
    def origin(self) -> str: ...

    async def url(
        self,
        method: str,
        key: str,
        *,
        expires_in: int,
        headers: dict[str, str] | None = None,
        params: Sequence[tuple[str, str]] = (),
    ) -> str: ...

    async def post(
        self,
        bucket: str,
        key: str,
        *,
        expires_in: int,
        fields: dict[str, str],
        conditions: list[Any],
    ) -> tuple[str, dict[str, str]]: ...


# The S3 operation a presigned request is, and the parameter each signed header or query
# parameter becomes in botocore's model of it.
_OPERATIONS = {"GET": "get_object", "PUT": "put_object", "HEAD": "head_object"}
_HEADER_PARAMS = {
    "content-type": "ContentType",
    "content-length": "ContentLength",
    "x-amz-checksum-sha256": "ChecksumSHA256",
    "if-none-match": "IfNoneMatch",
}
_QUERY_PARAMS = {
    "response-content-type": "ResponseContentType",
    "response-content-disposition": "ResponseContentDisposition",
    "partNumber": "PartNumber",
    "uploadId": "UploadId",
}


class BotocorePresigner:
    """Every URL and POST policy signed by the app's aiobotocore S3 client."""

    def __init__(self, client: Any, bucket: str, origin: str) -> None:
        self._client = client
        self._bucket = bucket
        self._origin = origin

    @classmethod
    async def learn(cls, client: Any, bucket: str) -> BotocorePresigner:
        url = await client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": _PROBE_KEY}, ExpiresIn=60
        )
        parts = urlsplit(url)
        return cls(client, bucket, f"{parts.scheme}://{parts.netloc}")

    @property
    def origin(self) -> str:
        return self._origin

    async def url(
        self,
        method: str,
        key: str,
        *,
        expires_in: int,
        headers: dict[str, str] | None = None,
        params: Sequence[tuple[str, str]] = (),
    ) -> str:
        query = dict(params)
        operation = "upload_part" if "partNumber" in query else _OPERATIONS[method]
        request: dict[str, Any] = {"Bucket": self._bucket, "Key": key}
        for name, value in (headers or {}).items():
            request[_HEADER_PARAMS[name.lower()]] = value
        for name, value in query.items():
            request[_QUERY_PARAMS[name]] = value
        for number in ("ContentLength", "PartNumber"):
            if number in request:
                request[number] = int(request[number])
        url: str = await self._client.generate_presigned_url(
            operation, Params=request, ExpiresIn=expires_in, HttpMethod=method
        )
        return url

    async def post(
        self,
        bucket: str,
        key: str,
        *,
        expires_in: int,
        fields: dict[str, str],
        conditions: list[Any],
    ) -> tuple[str, dict[str, str]]:
        post = await self._client.generate_presigned_post(
            bucket, key, Fields=fields, Conditions=conditions, ExpiresIn=expires_in
        )
        return post["url"], post["fields"]


class Presigner:
    """Signs URLs and POST policies for one bucket, directly (the opt-in fast path)."""

    def __init__(
        self,
        *,
        object_url_prefix: str,
        post_url: str,
        region: str,
        credentials: CredentialSource,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        # "<scheme>://<host>/<bucket>/" or "<scheme>://<bucket>.<host>/": a key follows.
        self._object_url_prefix = object_url_prefix
        self._post_url = post_url
        parts = urlsplit(object_url_prefix)
        self._host = parts.netloc
        self._path_prefix = parts.path
        self._credentials = credentials
        self._clock = clock
        self._keys = SigningKeys(region, "s3")

    @property
    def origin(self) -> str:
        """``<scheme>://<host>`` that presigned URLs point at (a browser's CORS peer)."""
        parts = urlsplit(self._object_url_prefix)
        return f"{parts.scheme}://{parts.netloc}"

    @classmethod
    async def learn(
        cls,
        presign_client: Any,
        bucket: str,
        credentials: CredentialSource,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> Presigner:
        """A presigner for ``bucket`` at the address botocore's client would sign for."""
        url = await presign_client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": _PROBE_KEY}, ExpiresIn=60
        )
        post = await presign_client.generate_presigned_post(bucket, _PROBE_KEY, ExpiresIn=60)
        prefix = url.split("?", 1)[0].removesuffix(_PROBE_KEY)
        return cls(
            object_url_prefix=prefix,
            post_url=post["url"],
            region=presign_client.meta.region_name,
            credentials=credentials,
            clock=clock,
        )

    async def url(
        self,
        method: str,
        key: str,
        *,
        expires_in: int,
        headers: dict[str, str] | None = None,
        params: Sequence[tuple[str, str]] = (),
    ) -> str:
        """A presigned URL for ``method`` on ``key``. ``headers`` are signed: the client must
        send them exactly. ``params`` (e.g. ``response-content-type``) join the query."""
        credentials = await self._credentials()
        now = self._clock()
        timestamp = now.strftime("%Y%m%dT%H%M%SZ")
        day = timestamp[:8]
        scope = self._keys.scope(day)
        signed = {"host": self._host}
        for name, value in (headers or {}).items():
            signed[name.lower()] = " ".join(value.split())
        signed_names = ";".join(sorted(signed))

        query = [(_encode(name), _encode(value)) for name, value in params]
        query += [
            ("X-Amz-Algorithm", ALGORITHM),
            ("X-Amz-Credential", _encode(f"{credentials.access_key}/{scope}")),
            ("X-Amz-Date", timestamp),
            ("X-Amz-Expires", str(expires_in)),
            ("X-Amz-SignedHeaders", _encode(signed_names)),
        ]
        if credentials.token is not None:
            query.append(("X-Amz-Security-Token", _encode(credentials.token)))

        path = quote(key, safe="/~")
        canonical_request = "\n".join(
            (
                method,
                self._path_prefix + path,
                "&".join(f"{name}={value}" for name, value in sorted(query)),
                "".join(f"{name}:{signed[name]}\n" for name in sorted(signed)),
                signed_names,
                UNSIGNED_PAYLOAD,
            )
        )
        string_to_sign = "\n".join(
            (ALGORITHM, timestamp, scope, hashlib.sha256(canonical_request.encode()).hexdigest())
        )
        signature = self._keys.signature(credentials.secret_key, day, string_to_sign)
        query_string = "&".join(f"{name}={value}" for name, value in query)
        return f"{self._object_url_prefix}{path}?{query_string}&X-Amz-Signature={signature}"

    async def post(
        self,
        bucket: str,
        key: str,
        *,
        expires_in: int,
        fields: dict[str, str],
        conditions: list[Any],
    ) -> tuple[str, dict[str, str]]:
        """A browser form upload: the URL and the form fields, the policy signed among them."""
        credentials = await self._credentials()
        now = self._clock()
        timestamp = now.strftime("%Y%m%dT%H%M%SZ")
        day = timestamp[:8]
        credential = f"{credentials.access_key}/{self._keys.scope(day)}"
        signed_fields = {**fields, "key": key}
        auth_fields = {
            "x-amz-algorithm": ALGORITHM,
            "x-amz-credential": credential,
            "x-amz-date": timestamp,
        }
        if credentials.token is not None:
            auth_fields["x-amz-security-token"] = credentials.token
        policy = {
            "expiration": (now + timedelta(seconds=expires_in)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "conditions": [
                *conditions,
                {"bucket": bucket},
                {"key": key},
                *({name: value} for name, value in auth_fields.items()),
            ],
        }
        encoded = base64.b64encode(json.dumps(policy).encode()).decode()
        signature = self._keys.signature(credentials.secret_key, day, encoded)
        return self._post_url, {
            **signed_fields,
            **auth_fields,
            "policy": encoded,
            "x-amz-signature": signature,
        }
