"""Public keys from an identity provider's JWKS URL, cached, refreshed with a bounded rate."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import jwt

from image_service.domain.errors import BackendUnavailable, Unauthenticated

log = logging.getLogger(__name__)

FETCH_TIMEOUT_SECONDS = 5
_MAX_JWKS_BYTES = 256 * 1024


class JwksCache:
    """Signing keys by ``kid``.

    Keys are fetched on first use and again when older than ``max_age``. A token naming an
    unknown ``kid`` (the IdP rotated its keys) triggers a refresh, but never more often than
    ``min_refresh_interval``: a flood of tokens with made-up kids cannot turn the service into
    a load generator against the IdP.
    """

    def __init__(
        self,
        url: str,
        http: aiohttp.ClientSession,
        *,
        min_refresh_interval: float,
        max_age: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._http = http
        self._min_refresh_interval = min_refresh_interval
        self._max_age = max_age
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()

    async def key_for(self, kid: str | None) -> jwt.PyJWK:
        if not kid:
            raise Unauthenticated("The token names no key (kid).", code="invalid_token")
        if kid not in self._keys or self._stale():
            await self._refresh()
        key = self._keys.get(kid)
        if key is None:
            raise Unauthenticated("The token's signing key is unknown.", code="invalid_token")
        return key

    def _stale(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at > self._max_age

    async def _refresh(self) -> None:
        async with self._lock:
            now = self._clock()
            if (
                self._attempted_at is not None
                and now - self._attempted_at < self._min_refresh_interval
            ):
                return  # refreshed (or tried) moments ago, possibly by a concurrent request
            self._attempted_at = now
            try:
                document = await self._fetch()
                keys = {
                    key.key_id: key
                    for key in jwt.PyJWKSet.from_dict(document).keys
                    if key.key_id and key.public_key_use in (None, "sig")
                }
            except (aiohttp.ClientError, TimeoutError, ValueError, jwt.PyJWKSetError) as exc:
                log.warning("JWKS refresh from %s failed: %s", self._url, type(exc).__name__)
                if not self._keys:
                    raise BackendUnavailable("jwks", type(exc).__name__) from exc
                return  # keep serving the keys we have
            self._keys = keys
            self._fetched_at = now

    async def _fetch(self) -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_SECONDS)
        async with self._http.get(self._url, timeout=timeout) as response:
            response.raise_for_status()
            body = await response.content.read(_MAX_JWKS_BYTES + 1)
            if len(body) > _MAX_JWKS_BYTES:
                raise ValueError("JWKS document too large")
            document = json.loads(body)
            if not isinstance(document, dict):
                raise ValueError("JWKS document is not an object")
            return document
