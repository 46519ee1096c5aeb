"""AWS Signature Version 4: what the presigner and the DynamoDB client share.

Both sign with credentials from botocore's provider chain (refreshed behind a CredentialSource)
and a signing key derived once per day, region, service and secret.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

ALGORITHM = "AWS4-HMAC-SHA256"


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key: str
    # Never in a log or a traceback.
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)


# Answers the current credentials; botocore's provider refreshes temporary ones behind it.
CredentialSource = Callable[[], Awaitable[Credentials]]


def hmac_sha256(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


class SigningKeys:
    """The day's signing key for one region and service, derived once (four HMACs)."""

    def __init__(self, region: str, service: str) -> None:
        self.region = region
        self.service = service
        self._cached: tuple[tuple[str, str], bytes] | None = None

    def scope(self, day: str) -> str:
        return f"{day}/{self.region}/{self.service}/aws4_request"

    def key(self, secret: str, day: str) -> bytes:
        # One key: per day, and per secret, which rotates with temporary credentials.
        if self._cached is None or self._cached[0] != (secret, day):
            key = hmac_sha256(f"AWS4{secret}".encode(), day)
            for part in (self.region, self.service, "aws4_request"):
                key = hmac_sha256(key, part)
            self._cached = ((secret, day), key)
        return self._cached[1]

    def signature(self, secret: str, day: str, string_to_sign: str) -> str:
        return hmac.new(self.key(secret, day), string_to_sign.encode(), hashlib.sha256).hexdigest()
