"""Renditions on request: any allowed size and format of a ready image, behind a signed URL.

The owner (or an admin) asks for a rendition and gets a *signed delivery URL*: it names the
image, the rendition and an expiry, and carries an HMAC of all three, so it works without a
token until it expires and any change to it is refused (403). Its expiry is the end of the next
signing window, so one rendition's URL stays the same for a whole window: CDNs and browsers
cache it.

Delivering renders once and stores the result under the image's own prefix in S3 (so deleting
the image deletes its renditions); later requests find it there (one S3 call) or in this
process's memory (the most requested renditions' bytes, and the ETags of the rest: a match costs
no S3 call). Abuse is bounded three ways: sizes
and qualities come from allowlists, each user has a rate of *new* renditions, and each process
renders at most a few at once, answering 503 with Retry-After beyond that rather than queueing.
Concurrent first requests for one rendition render it once (single flight).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from cachetools import LRUCache, TTLCache

from image_service.domain.layout import image_prefix
from image_service.domain.ratelimit import TokenBucketLimiter
from image_service.errors import (
    BackendUnavailable,
    Conflict,
    ImageNotFound,
    InvalidRequest,
    RateLimited,
    RendersBusy,
    RenditionUrlRefused,
)
from image_service.imaging.render import FITS, RENDITION_FORMATS, RenderedVariant
from image_service.models import ImageRecord, ImageStatus

# What `format=auto` becomes, by the client's Accept header: the smallest the browser takes.
_NEGOTIATED = (("image/avif", "avif"), ("image/webp", "webp"))
_EXTENSIONS = {"jpeg": "jpg", "webp": "webp", "avif": "avif"}
_CONTENT_TYPES = {"jpeg": "image/jpeg", "webp": "image/webp", "avif": "image/avif"}
# Renditions this process knows exist (key -> ETag): an If-None-Match is answered from here.
_KNOWN_RENDITIONS = 10_000
# How long a rendition's bytes stay in memory: what a delete made on another replica may lag.
_MEMORY_SECONDS = 60


@dataclass(frozen=True, slots=True)
class RenditionPolicy:
    widths: tuple[int, ...]  # allowed widths and heights, pixels
    qualities: tuple[int, ...]  # allowed `q` values
    presets: dict[str, RenditionSpec]
    url_window: int  # seconds: a URL stays the same this long, and lives up to twice it
    max_renders: int  # at once, per process
    secret: bytes
    memory_bytes: int  # renditions kept in this process's memory, at most, in bytes


@dataclass(frozen=True, slots=True)
class RenditionSpec:
    width: int | None
    height: int | None
    fit: str
    format: str  # one of RENDITION_FORMATS, or "auto"
    quality: int | None

    @property
    def path(self) -> str:
        """Its canonical text in URLs and signatures: ``w800-h0-inside-auto-q0``."""
        return (
            f"w{self.width or 0}-h{self.height or 0}-{self.fit}-{self.format}-q{self.quality or 0}"
        )

    @classmethod
    def parse(cls, path: str) -> RenditionSpec | None:
        parts = path.split("-")
        if len(parts) != 5 or not all(parts):
            return None
        w, h, fit, fmt, q = parts
        if (w[0], h[0], q[0]) != ("w", "h", "q") or fit not in FITS:
            return None
        if fmt != "auto" and fmt not in RENDITION_FORMATS:
            return None
        try:
            width, height, quality = int(w[1:]), int(h[1:]), int(q[1:])
        except ValueError:
            return None
        spec = cls(width or None, height or None, fit, fmt, quality or None)
        return spec if spec.path == path else None  # one spelling per rendition

    def negotiated(self, accept: str) -> str:
        if self.format != "auto":
            return self.format
        return next((fmt for mime, fmt in _NEGOTIATED if mime in accept), "jpeg")


def validated_spec(
    policy: RenditionPolicy,
    *,
    width: int | None,
    height: int | None,
    fit: str,
    fmt: str,
    quality: int | None,
    preset: str | None,
) -> RenditionSpec:
    """The rendition asked for, or a 422 naming what is allowed."""
    if preset is not None:
        if preset not in policy.presets or width or height:
            raise InvalidRequest(
                "Unknown preset, or a preset with a size.",
                code="rendition_not_allowed",
                details={"presets": sorted(policy.presets)},
            )
        chosen = policy.presets[preset]
        return RenditionSpec(chosen.width, chosen.height, chosen.fit, fmt, quality)
    refused = {}
    if width is None and height is None:
        refused["w"] = "Give w, h or both."
    for name, value in (("w", width), ("h", height)):
        if value is not None and value not in policy.widths:
            refused[name] = f"Not an allowed size: {', '.join(map(str, policy.widths))}."
    if fit == "cover" and (width is None or height is None):
        refused["fit"] = "cover needs both w and h."
    if quality is not None and quality not in policy.qualities:
        refused["q"] = f"Not an allowed quality: {', '.join(map(str, policy.qualities))}."
    if refused:
        raise InvalidRequest(
            "This rendition is not allowed.",
            code="rendition_not_allowed",
            details={
                "fields": refused,
                "allowed": {"w": policy.widths, "h": policy.widths, "q": policy.qualities},
            },
        )
    # The schema's choices, checked there.
    assert fit in FITS
    assert fmt == "auto" or fmt in RENDITION_FORMATS
    return RenditionSpec(width, height, fit, fmt, quality)


@dataclass(frozen=True, slots=True)
class SignedRendition:
    path: str  # /r/<owner key>/<image id>/<spec>/<expires>/<signature>
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Delivery:
    data: bytes | None  # None: the client's copy is current (its If-None-Match matched)
    content_type: str
    etag: str
    negotiated: bool  # the format followed Accept: the answer varies by it


class RenditionSigner:
    def __init__(self, secret: bytes, window: int, clock: Callable[[], datetime]) -> None:
        self._secret = secret
        self._window = window
        self._clock = clock

    def _signature(self, owner: str, image_id: str, spec: str, expires: int) -> str:
        message = f"{owner}\n{image_id}\n{spec}\n{expires}".encode()
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def sign(self, owner: str, image_id: str, spec: RenditionSpec) -> SignedRendition:
        """``/r/<owner, base64url>/<image id>/<rendition>/<expires>/<signature>``."""
        now = int(self._clock().timestamp())
        # The end of the next window: the same URL all through this one.
        expires = (now // self._window + 2) * self._window
        signature = self._signature(owner, image_id, spec.path, expires)
        owner_segment = base64.urlsafe_b64encode(owner.encode()).rstrip(b"=").decode()
        return SignedRendition(
            path=f"/r/{owner_segment}/{image_id}/{spec.path}/{expires}/{signature}",
            expires_at=datetime.fromtimestamp(expires, self._clock().tzinfo),
        )

    def verify(
        self, owner_segment: str, image_id: str, spec_path: str, expires: str, signature: str
    ) -> tuple[str, RenditionSpec, int]:
        """(owner, rendition, expiry) of a URL's segments, if it was signed here and is live."""
        try:
            padded = owner_segment + "=" * (-len(owner_segment) % 4)
            owner = base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")
        except (ValueError, UnicodeError):
            raise RenditionUrlRefused("invalid_signature") from None
        spec = RenditionSpec.parse(spec_path)
        if (
            spec is None
            or not (expires.isascii() and expires.isdigit())
            or not hmac.compare_digest(
                self._signature(owner, image_id, spec_path, int(expires)).encode(),
                signature.encode("utf-8", "surrogateescape"),
            )
        ):
            raise RenditionUrlRefused("invalid_signature")
        if int(expires) <= self._clock().timestamp():
            raise RenditionUrlRefused("url_expired")
        return owner, spec, int(expires)


Render = Callable[[bytes, RenditionSpec, str], Awaitable[RenderedVariant]]


def _require_ready(record: ImageRecord) -> None:
    if record.status is not ImageStatus.READY:
        raise Conflict(
            "Only a ready image has renditions.",
            code="image_not_ready",
            details={"status": record.status.value},
        )


class Renditions:
    """Delivery: what is stored is served, what is not is rendered once, within the bounds."""

    def __init__(
        self,
        *,
        policy: RenditionPolicy,
        signer: RenditionSigner,
        get_record: Callable[[str, str], Awaitable[ImageRecord | None]],
        read_object: Callable[[str], Awaitable[tuple[bytes, str] | None]],
        write_object: Callable[[str, bytes, str], Awaitable[str]],
        render: Render,
        limiter: TokenBucketLimiter,
        observe: Callable[[str, float | None], None],
    ) -> None:
        self._policy = policy
        self.signer = signer
        self._get_record = get_record
        self._read = read_object
        self._write = write_object
        self._render = render
        self._limiter = limiter
        self._observe = observe
        self._known: LRUCache[str, str] = LRUCache(maxsize=_KNOWN_RENDITIONS)
        # The most requested renditions' bytes: served with no S3 call at all. Bounded in bytes
        # (one rendition takes at most an eighth, so a few large ones cannot evict the rest) and
        # in time: a delete on another replica stops this one serving within _MEMORY_SECONDS.
        self._memory: TTLCache[str, tuple[bytes, str]] = TTLCache(
            maxsize=max(1, policy.memory_bytes),
            ttl=_MEMORY_SECONDS,
            getsizeof=lambda entry: len(entry[0]) or 1,
        )
        self._in_flight: dict[str, asyncio.Future[tuple[bytes, str]]] = {}
        self._rendering = 0

    @staticmethod
    def key(owner: str, image_id: str, spec: RenditionSpec, fmt: str) -> str:
        name = f"{spec.width or 0}x{spec.height or 0}-{spec.fit}-q{spec.quality or 0}"
        return f"{image_prefix(owner, image_id)}r/{name}.{_EXTENSIONS[fmt]}"

    def sign_for(self, record: ImageRecord, spec: RenditionSpec) -> SignedRendition:
        """The delivery URL of a rendition of ``record``, which its caller may see."""
        _require_ready(record)
        return self.signer.sign(record.user_id, record.image_id, spec)

    @property
    def policy(self) -> RenditionPolicy:
        return self._policy

    def forget(self, owner: str, image_id: str) -> None:
        """An image was deleted: none of its renditions is served from this process again."""
        prefix = image_prefix(owner, image_id)
        for key in [key for key in self._memory if key.startswith(prefix)]:
            self._memory.pop(key, None)
        for key in [key for key in self._known if key.startswith(prefix)]:
            self._known.pop(key, None)

    async def deliver(
        self, owner: str, image_id: str, spec: RenditionSpec, *, accept: str, if_none_match: str
    ) -> Delivery:
        fmt = spec.negotiated(accept)
        key = self.key(owner, image_id, spec, fmt)
        content_type = _CONTENT_TYPES[fmt]
        negotiated = spec.format == "auto"
        known = self._known.get(key)
        if known is not None and known == if_none_match:
            self._observe("cached", None)
            return Delivery(None, content_type, known, negotiated)
        stored = self._memory.get(key)
        if stored is None:
            stored = await self._read(key)
            if stored is None:
                stored = await self._single_flight(key, owner, image_id, spec, fmt)
            else:
                self._observe("cached", None)
            if len(stored[0]) <= self._policy.memory_bytes // 8:
                self._memory[key] = stored
        else:
            self._observe("cached", None)
        data, etag = stored
        self._known[key] = etag
        if etag == if_none_match:
            return Delivery(None, content_type, etag, negotiated)
        return Delivery(data, content_type, etag, negotiated)

    async def _single_flight(
        self, key: str, owner: str, image_id: str, spec: RenditionSpec, fmt: str
    ) -> tuple[bytes, str]:
        running = self._in_flight.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[tuple[bytes, str]] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            result = await self._render_once(key, owner, image_id, spec, fmt)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else need
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._in_flight[key]

    async def _render_once(
        self, key: str, owner: str, image_id: str, spec: RenditionSpec, fmt: str
    ) -> tuple[bytes, str]:
        if self._rendering >= self._policy.max_renders:
            self._observe("refused", None)
            raise RendersBusy()
        try:
            self._limiter.take(owner)
        except RateLimited:
            self._observe("refused", None)
            raise
        self._rendering += 1
        try:
            record = await self._get_record(owner, image_id)
            if record is None or record.status is ImageStatus.DELETING:
                raise ImageNotFound(image_id)
            _require_ready(record)
            original = await self._read(record.s3_key)
            if original is None:
                raise BackendUnavailable("s3", "original missing")
            started = time.perf_counter()
            rendered = await self._render(original[0], spec, fmt)
            self._observe("rendered", time.perf_counter() - started)
            etag = await self._write(key, rendered.data, rendered.content_type)
            return rendered.data, etag
        finally:
            self._rendering -= 1
