"""Opaque, tamper-proof list cursors.

A cursor names the last item of a page (its time-ordered sort key) and the owner it was issued
for, signed with HMAC-SHA256. A forged, altered or foreign cursor is refused rather than trusted,
so a caller can never steer a DynamoDB query with it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass

from image_service.errors import InvalidRequest

_MAC_BYTES = 16


@dataclass(frozen=True, slots=True)
class CursorPosition:
    sort_key: str
    image_id: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorCodec:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, owner: str, position: CursorPosition) -> str:
        payload = json.dumps(
            {"o": owner, "s": position.sort_key, "i": position.image_id}, separators=(",", ":")
        ).encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def decode(self, owner: str, cursor: str) -> CursorPosition:
        invalid = InvalidRequest("The cursor is invalid.", code="invalid_cursor")
        body, _, mac = cursor.partition(".")
        try:
            payload, signature = _unb64(body), _unb64(mac)
        except (binascii.Error, ValueError):
            raise invalid from None
        if not hmac.compare_digest(signature, self._mac(payload)):
            raise invalid
        data = json.loads(payload)
        if data.get("o") != owner:
            # Genuine, but issued for another user's listing.
            raise invalid
        return CursorPosition(sort_key=data["s"], image_id=data["i"])
