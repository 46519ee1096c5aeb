"""Fetching an import's bytes from the URL its owner gave (``domain/imports.py``), as a client
inside the service's network must fetch what a stranger names.

- Only ``http`` and ``https``, no credentials in the URL, at most 2,048 characters.
- Before each request (the first and each redirect's), the host is resolved and every address
  checked (``domain/callbacks.py``): loopback, private, link-local, CGNAT, the metadata
  address, ``0.0.0.0``, IPv4-mapped and NAT64 forms, and the decimal, octal and hex spellings
  of all of them are refused.
- The connection itself is resolved through ``PublicOnlyResolver``: it goes to an address that
  passed the check, so a name that resolves elsewhere a moment later (DNS rebinding) is
  refused, not followed.
- Redirects are followed by hand, at most ``MAX_REDIRECTS`` times, each hop checked again.
- The body is streamed under the size cap (a declared ``Content-Length`` over it is refused
  before a byte is read), and the whole fetch, redirects included, has one deadline.
- No proxy from the environment, no cookies, no ``Authorization``: a fetch carries nothing of
  the service's.

``IMAGE_SERVICE_IMPORT_ALLOW_PRIVATE`` lets private addresses through (tests, private
deployments), never link-local ones: the instance metadata service stays out of reach.
Each refusal is a :class:`FetchRefused` with the code the image is rejected with.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from urllib.parse import urljoin

import aiohttp

from image_service import __version__
from image_service.domain.callbacks import reachable, url_refusal
from image_service.domain.imports import FetchRefused
from image_service.imaging.spool import Spooled, spool
from image_service.worker.webhooks import NonPublicAddress, PublicOnlyResolver

MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK_BYTES = 64 * 1024
USER_AGENT = f"image-service-import/{__version__}"


class UrlFetcher:
    def __init__(
        self,
        *,
        allow_private: bool,
        deadline_seconds: float,
        is_public: Callable[[str], bool] | None = None,
    ) -> None:
        self._allow_private = allow_private
        self._deadline = deadline_seconds
        # Each address must pass: public only, or with allow_private anything but metadata.
        self._is_public = is_public or reachable(allow_private=allow_private)
        resolver = PublicOnlyResolver(self._is_public)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=resolver, limit=32, ttl_dns_cache=0),
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": USER_AGENT, "Accept": "image/*"},
            trust_env=False,
        )

    async def close(self) -> None:
        await self._session.close()

    async def fetch(self, url: str, *, max_bytes: int) -> Spooled:
        """The bytes ``url`` serves (following up to ``MAX_REDIRECTS`` redirects), spooled."""
        try:
            async with asyncio.timeout(self._deadline):
                return await self._follow(url, max_bytes)
        except TimeoutError:
            raise FetchRefused("fetch_failed", f"not fetched within {self._deadline:g} s") from None

    async def _follow(self, url: str, max_bytes: int) -> Spooled:
        for _ in range(MAX_REDIRECTS + 1):
            refusal = await url_refusal(
                url, allow_private=self._allow_private, is_public=self._is_public
            )
            if refusal is not None:
                raise FetchRefused("fetch_refused", refusal)
            try:
                fetched = await self._hop(url, max_bytes)
            except aiohttp.ClientConnectorError as exc:
                if isinstance(exc.os_error, NonPublicAddress):
                    raise FetchRefused("fetch_refused", str(exc.os_error)) from None
                raise FetchRefused("fetch_failed", f"no connection: {exc.os_error}") from None
            except (aiohttp.ClientError, ValueError) as exc:
                raise FetchRefused("fetch_failed", type(exc).__name__) from None
            if isinstance(fetched, Spooled):
                return fetched
            url = fetched
        raise FetchRefused("fetch_refused", f"more than {MAX_REDIRECTS} redirects")

    async def _hop(self, url: str, max_bytes: int) -> Spooled | str:
        """The bytes ``url`` serves, or where it redirects to."""
        async with self._session.get(url, allow_redirects=False) as response:
            if response.status in _REDIRECTS:
                location = response.headers.get("Location")
                if not location:
                    raise FetchRefused("fetch_failed", "a redirect without a Location")
                return urljoin(url, location)
            if response.status != 200:
                raise FetchRefused("fetch_failed", f"the server answered {response.status}")
            declared = response.content_length
            if declared is not None and declared > max_bytes:
                raise FetchRefused("too_large", f"it declares {declared} bytes")
            chunks = response.content.iter_chunked(_CHUNK_BYTES)
            return await spool(_capped(chunks, max_bytes))


async def _capped(chunks: AsyncIterator[bytes], max_bytes: int) -> AsyncIterator[bytes]:
    """``chunks``, refused once they pass ``max_bytes`` (whatever the server declared)."""
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            raise FetchRefused("too_large", f"more than {max_bytes} bytes")
        yield chunk
