"""DynamoDB's JSON protocol spoken directly: the service's table calls without botocore's stack.

A DynamoDB call is one POST: a JSON body, an ``X-Amz-Target`` naming the operation, a SigV4
``Authorization`` header; the answer is JSON of the same shape botocore hands back for every type
this service stores (``tests/unit/test_dynamodb_wire.py`` compares both). Around that, botocore
and aiobotocore spend about 600 µs of CPU per call (``bench/profile.py``: event hooks, endpoint
rules, the user agent, their HTTP layer, serializing, signing, parsing), more than everything
else in a read request. This client keeps what matters of it:

- SigV4 header signing (``sigv4.py``), proven equal to botocore's signer in the tests;
- the credentials of botocore's provider chain and the endpoint botocore resolved at startup
  (``AWS_ENDPOINT_URL_DYNAMODB``, the region, FIPS or dual-stack settings);
- botocore's *standard* retry mode: up to ``max_attempts`` on throttling, transient error codes,
  5xx, connection errors, timeouts and a response whose CRC32 does not match, with jittered
  exponential backoff and the same retry quota, so an outage is not met with a retry storm;
- failures raised as botocore's ``ClientError`` of the same shape (``Error.Code``, the HTTP
  status, and the body's other members such as ``CancellationReasons``), so the callers and
  ``backend_errors`` are unchanged.

Provisioning (create, describe, waiters) stays on aiobotocore: it is rare and uses the waiters.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import uuid
import zlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from botocore.exceptions import ClientError

from image_service.storage.dynamo.calls import CallObserver
from image_service.storage.sigv4 import ALGORITHM, CredentialSource, SigningKeys

_TARGET_PREFIX = "DynamoDB_20120810."
_CONTENT_TYPE = "application/x-amz-json-1.0"

# botocore's standard retry mode (botocore/retries/standard.py), for DynamoDB.
_THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
    }
)
_TRANSIENT_CODES = frozenset({"RequestTimeout", "RequestTimeoutException"})
_TRANSIENT_STATUSES = frozenset({500, 502, 503, 504})
_MAX_BACKOFF_SECONDS = 20
# The retry quota: a retry spends 5 (10 after a timeout), a success gives 1 back.
_QUOTA_CAPACITY = 500
_RETRY_COST = 5
_TIMEOUT_RETRY_COST = 10


class _Retryable(Exception):
    """An attempt that may be tried again; ``error`` is what the caller gets if it is not."""

    def __init__(self, error: BaseException, cost: int) -> None:
        self.error = error
        self.cost = cost


class DynamoDBWire:
    """Calls DynamoDB's JSON API at ``endpoint_url`` over ``session`` (the caller owns it)."""

    def __init__(
        self,
        *,
        endpoint_url: str,
        region: str,
        credentials: CredentialSource,
        session: aiohttp.ClientSession,
        max_attempts: int,
        user_agent: str,
        proxy: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._url = endpoint_url.rstrip("/") + "/"
        # An endpoint may sit under a path (a gateway's): it is part of what is signed.
        self._path = urlsplit(self._url).path
        self._host = _signed_host(endpoint_url)
        self._credentials = credentials
        self._session = session
        self._proxy = proxy
        # As botocore reads its retries config: max_attempts retries after the first try.
        self._total_attempts = max_attempts + 1
        self._user_agent = user_agent
        self._clock = clock
        self._jitter = jitter
        self._keys = SigningKeys(region, "dynamodb")
        self._quota = _QUOTA_CAPACITY
        self._observers: list[CallObserver] = []

    def observe(self, observer: CallObserver) -> None:
        """``observer`` hears of every call once, however many attempts it took."""
        self._observers.append(observer)

    async def call(self, operation: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """The answer to one DynamoDB operation (``GetItem``, ``Query``...), its request given in
        the API's own JSON shape; a refusal raises botocore's ``ClientError``."""
        if operation == "TransactWriteItems" and "ClientRequestToken" not in request:
            # As botocore does: every attempt of this call is the same transaction, so a retry
            # after a lost answer to a committed one succeeds as that write, not as a new one
            # failing its own conditions (DynamoDB keeps the token ten minutes).
            request = {**request, "ClientRequestToken": str(uuid.uuid4())}
        body = orjson.dumps(request)
        attempt = 1
        spent = 0  # of the retry quota, by this call's retries
        while True:
            try:
                answer = await self._attempt(operation, body, attempt)
            except _Retryable as retryable:
                if attempt >= self._total_attempts or retryable.cost > self._quota:
                    self._tell(operation, getattr(retryable.error, "response", {}))
                    raise retryable.error from None
                self._quota -= retryable.cost
                spent += retryable.cost
                delay = self._jitter() * min(2 ** (attempt - 1), _MAX_BACKOFF_SECONDS)
                attempt += 1
                await asyncio.sleep(delay)
                continue
            except ClientError as refused:
                self._tell(operation, refused.response)
                raise
            # botocore's refund: what this call's retries spent, or 1 when it needed none.
            self._quota = min(_QUOTA_CAPACITY, self._quota + (spent or 1))
            self._tell(operation, answer)
            return answer

    def _tell(self, operation: str, outcome: Mapping[str, Any]) -> None:
        for observer in self._observers:
            observer(operation, outcome)

    async def _attempt(self, operation: str, body: bytes, attempt: int) -> dict[str, Any]:
        headers = await self.signed_headers(operation, body)
        try:
            async with self._session.post(
                self._url, data=body, headers=headers, proxy=self._proxy
            ) as response:
                payload = await response.read()
                status = response.status
                crc32 = response.headers.get("x-amz-crc32")
                request_id = response.headers.get("x-amzn-RequestId", "")
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            timed_out = isinstance(exc, TimeoutError)
            raise _Retryable(exc, _TIMEOUT_RETRY_COST if timed_out else _RETRY_COST) from exc
        if crc32 is not None and zlib.crc32(payload) != int(crc32):
            # Corrupted on the way: botocore retries these for DynamoDB too.
            raise _Retryable(aiohttp.ClientPayloadError("x-amz-crc32 mismatch"), _RETRY_COST)
        metadata = {"RequestId": request_id, "HTTPStatusCode": status, "RetryAttempts": attempt - 1}
        if status == 200:
            answer: dict[str, Any] = orjson.loads(payload)
            answer["ResponseMetadata"] = metadata
            return answer
        error = _client_error(operation, status, payload, metadata)
        code = error.response["Error"]["Code"]
        if code in _THROTTLING_CODES or code in _TRANSIENT_CODES or status in _TRANSIENT_STATUSES:
            raise _Retryable(error, _RETRY_COST)
        raise error

    async def signed_headers(self, operation: str, body: bytes) -> dict[str, str]:
        """The request's headers, signed (SigV4) with the current credentials."""
        credentials = await self._credentials()
        timestamp = self._clock().strftime("%Y%m%dT%H%M%SZ")
        day = timestamp[:8]
        headers = {
            "content-type": _CONTENT_TYPE,
            "host": self._host,
            "x-amz-date": timestamp,
            "x-amz-target": _TARGET_PREFIX + operation,
        }
        if credentials.token is not None:
            headers["x-amz-security-token"] = credentials.token
        names = sorted(headers)
        signed_names = ";".join(names)
        canonical_request = "\n".join(
            (
                "POST",
                self._path,
                "",
                "".join(f"{name}:{headers[name]}\n" for name in names),
                signed_names,
                hashlib.sha256(body).hexdigest(),
            )
        )
        scope = self._keys.scope(day)
        string_to_sign = "\n".join(
            (ALGORITHM, timestamp, scope, hashlib.sha256(canonical_request.encode()).hexdigest())
        )
        signature = self._keys.signature(credentials.secret_key, day, string_to_sign)
        headers["authorization"] = (
            f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={signed_names}, Signature={signature}"
        )
        del headers["host"]  # aiohttp writes it from the URL
        headers["user-agent"] = self._user_agent  # unsigned, as botocore leaves it
        # Unsigned: the CRC32 DynamoDB sends is of the bytes as sent, so none may be compressed.
        headers["accept-encoding"] = "identity"
        return headers


def _signed_host(url: str) -> str:
    """The Host header as the request carries it: no port when it is the scheme's default."""
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return host if parts.port in (None, default) else f"{host}:{parts.port}"


def _client_error(
    operation: str, status: int, payload: bytes, metadata: dict[str, Any]
) -> ClientError:
    """botocore's ClientError for a refusal: ``{"__type": "...#Code", "message": ...}`` and
    the body's other members (``CancellationReasons``, ``Item``) beside ``Error``."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        body = {"__type": str(status), "message": payload[:200].decode("utf-8", "replace")}
    code = str(body.pop("__type", status)).rpartition("#")[2]
    message = str(body.pop("message", body.pop("Message", "")))
    response = {**body, "Error": {"Code": code, "Message": message}, "ResponseMetadata": metadata}
    return ClientError(response, operation)  # type: ignore[arg-type]  # botocore's own shape
