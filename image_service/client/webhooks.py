"""Standard Webhooks (standardwebhooks.com) signatures: how the service signs the events it
sends, and how a receiver checks them. Importable alone (the standard library only).

    from image_service.client.webhooks import WebhookVerificationError, verify

    try:
        event = verify(SECRET, request.headers, await request.read())
    except WebhookVerificationError:
        return 400
    if seen(request.headers["webhook-id"]):  # delivered at least once: de-duplicate by id
        return 200
    ...

The signed content is ``<webhook-id>.<webhook-timestamp>.<body>``; ``webhook-signature`` holds
``v1,<base64 HMAC-SHA256>`` (several, space-separated, while a secret is being rotated). A
secret is ``whsec_`` followed by base64 bytes, as the standard writes it; any other string is
used as its UTF-8 bytes.

Any Standard Webhooks library verifies these signatures. Those libraries base64-decode every
string secret, prefixed or not, so give them a plain secret as :func:`standard_secret` writes
it (``whsec_`` + base64 of its UTF-8 bytes); a ``whsec_`` secret, such as the per-owner key of
``GET /webhooks/secret``, goes to them as it is.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

SECRET_PREFIX = "whsec_"  # noqa: S105  # the format's prefix, not a secret
# A signed request older (or newer) than this is refused: a replayed capture is useless.
DEFAULT_TOLERANCE_SECONDS = 300


class WebhookVerificationError(Exception):
    """The request is not a genuine, fresh event from the service."""


def secret_key(secret: str) -> bytes:
    if secret.startswith(SECRET_PREFIX):
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    return secret.encode()


def standard_secret(secret: str) -> str:
    """``secret`` as Standard Webhooks libraries read secrets: ``whsec_`` + base64 of its key."""
    if secret.startswith(SECRET_PREFIX):
        return secret
    return SECRET_PREFIX + base64.b64encode(secret.encode()).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one delivery attempt."""
    content = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> Any:
    """The event (parsed JSON) if the headers sign ``body`` with ``secret`` within
    ``tolerance`` seconds of ``now``; else WebhookVerificationError. ``headers`` is looked up
    case-insensitively."""
    lowered = {name.lower(): value for name, value in headers.items()}
    try:
        message_id = lowered["webhook-id"]
        timestamp = int(lowered["webhook-timestamp"])
        signatures = lowered["webhook-signature"].split()
    except (KeyError, ValueError):
        raise WebhookVerificationError("missing or malformed webhook headers") from None
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        raise WebhookVerificationError("timestamp outside the tolerance")
    expected = sign(secret, message_id, timestamp, body)
    if not any(hmac.compare_digest(expected, given) for given in signatures):
        raise WebhookVerificationError("no signature matches")
    try:
        return json.loads(body)
    except ValueError:
        raise WebhookVerificationError("the body is not JSON") from None
