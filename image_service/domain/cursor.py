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

from image_service.domain.errors import InvalidRequest

_MAC_BYTES = 16


@dataclass(frozen=True, slots=True)
class CursorPosition:
    sort_key: str
    image_id: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    """The bytes of unpadded base64url, spelt exactly as :func:`_b64` spells them: one
    spelling per cursor (no padding, no stray or non-canonical trailing bits)."""
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise ValueError("not the canonical spelling")
    return data


class CursorCodec:
    def __init__(self, *keys: bytes) -> None:
        """``keys``: the one that signs, then any being rotated out (still verified)."""
        assert keys
        self._keys = keys

    def _mac(self, payload: bytes, key: bytes | None = None) -> bytes:
        return hmac.new(key or self._keys[0], payload, hashlib.sha256).digest()[:_MAC_BYTES]

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
        if not any(hmac.compare_digest(signature, self._mac(payload, key)) for key in self._keys):
            raise invalid
        data = json.loads(payload)
        if data.get("o") != owner:
            # Genuine, but issued for another user's listing.
            raise invalid
        return CursorPosition(sort_key=data["s"], image_id=data["i"])
