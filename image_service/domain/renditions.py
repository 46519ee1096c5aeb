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
from dataclasses import dataclass, replace
from datetime import datetime

from cachetools import LRUCache, TTLCache

from image_service.domain.cdn import owner_segment
from image_service.domain.errors import (
    BackendUnavailable,
    Conflict,
    ImageNotFound,
    InvalidRequest,
    RateLimited,
    RendersBusy,
    RenditionUrlRefused,
    ServiceError,
)
from image_service.domain.holds import Holds
from image_service.domain.layout import image_prefix
from image_service.domain.models import FocalPoint, ImageRecord, ImageStatus
from image_service.domain.ratelimit import TokenBucketLimiter
from image_service.imaging.render import FITS, GRAVITIES, RENDITION_FORMATS, RenderedVariant

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
    keys: tuple[bytes, ...]  # the one that signs, then any being rotated out
    memory_bytes: int  # renditions kept in this process's memory, at most, in bytes
    max_renders_per_user: int = 2  # at once, per process
    max_age: int = 60  # seconds a browser or CDN may keep a delivered rendition, at most


@dataclass(frozen=True, slots=True)
class RenditionSpec:
    width: int | None
    height: int | None
    fit: str
    format: str  # one of RENDITION_FORMATS, or "auto"
    quality: int | None
    # What a cover crop keeps (GRAVITIES); None: the image's default (see for_image). Only
    # cover crops, so only cover has one.
    gravity: str | None = None

    @property
    def path(self) -> str:
        """Its canonical text in URLs and signatures: ``w800-h0-inside-auto-q0``,
        ``w200-h200-cover-webp-q0-gauto``."""
        text = (
            f"w{self.width or 0}-h{self.height or 0}-{self.fit}-{self.format}-q{self.quality or 0}"
        )
        return f"{text}-g{self.gravity}" if self.gravity else text

    @classmethod
    def parse(cls, path: str) -> RenditionSpec | None:
        parts = path.split("-")
        if len(parts) not in (5, 6) or not all(parts):
            return None
        w, h, fit, fmt, q = parts[:5]
        gravity = parts[5][1:] if len(parts) == 6 else None
        if (w[0], h[0], q[0]) != ("w", "h", "q") or fit not in FITS:
            return None
        if fmt != "auto" and fmt not in RENDITION_FORMATS:
            return None
        if gravity is not None and (parts[5][0] != "g" or gravity not in GRAVITIES):
            return None
        try:
            width, height, quality = int(w[1:]), int(h[1:]), int(q[1:])
        except ValueError:
            return None
        spec = cls(width or None, height or None, fit, fmt, quality or None, gravity)
        return spec if spec.path == path else None  # one spelling per rendition

    @property
    def crops(self) -> bool:
        return self.fit == "cover" and bool(self.width and self.height)

    def for_image(self, record: ImageRecord) -> RenditionSpec:
        """This rendition as signed for ``record``: a crop's gravity decided (focal when the
        image has a focal point, else auto), and none for what does not crop."""
        if not self.crops:
            return replace(self, gravity=None)
        if self.gravity is not None:
            return self
        return replace(self, gravity="focal" if record.focal is not None else "auto")

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
    gravity: str | None = None,
) -> RenditionSpec:
    """The rendition asked for, or a 422 naming what is allowed."""
    if preset is not None:
        if preset not in policy.presets or width or height:
            raise InvalidRequest(
                "Unknown preset, or a preset with a size.",
                code="rendition_not_allowed",
                details={"presets": sorted(policy.presets)},
            )
        if quality is not None and quality not in policy.qualities:
            raise InvalidRequest(
                "This rendition is not allowed.",
                code="rendition_not_allowed",
                details={
                    "fields": {
                        "q": f"Not an allowed quality: {', '.join(map(str, policy.qualities))}."
                    },
                    "allowed": {"q": policy.qualities},
                },
            )
        chosen = policy.presets[preset]
        _check_gravity(chosen.fit, gravity)
        return RenditionSpec(chosen.width, chosen.height, chosen.fit, fmt, quality, gravity)
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
    if gravity is not None and fit != "cover":
        refused["gravity"] = "Only cover crops: gravity goes with fit=cover."
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
    assert gravity is None or gravity in GRAVITIES
    return RenditionSpec(width, height, fit, fmt, quality, gravity)


def _check_gravity(fit: str, gravity: str | None) -> None:
    if gravity is not None and fit != "cover":
        raise InvalidRequest(
            "This rendition is not allowed.",
            code="rendition_not_allowed",
            details={"fields": {"gravity": "Only cover crops: this preset does not."}},
        )


def edition(record: ImageRecord) -> str:
    """What an image's renditions are made from, in ten hex digits: its bytes' digest and its
    focal point. It is in every rendition's URL and stored key, so new bytes (a reprocess) or
    a new focal point mean new URLs: a cached rendition is never stale, only unreferenced,
    and the old URLs are refused (404)."""
    focal = "" if record.focal is None else f"{record.focal.x:.4f},{record.focal.y:.4f}"
    return hashlib.sha256(f"{record.sha256}\n{focal}".encode()).hexdigest()[:_EDITION_LENGTH]


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


_EDITION_LENGTH = 10
# The longest expiry a URL can carry: ten digits last until 2286, twelve are room to spare.
_MAX_EXPIRY_DIGITS = 12
_SIGNATURE_LENGTH = 43  # 32 bytes, unpadded base64url


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _canonical_owner(segment: str) -> str | None:
    """The owner a URL's owner segment names, if it is spelt exactly as :meth:`sign` spells
    it (unpadded base64url of the UTF-8 owner, no stray or non-zero trailing bits)."""
    if not segment.isascii():
        return None
    try:
        data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        owner = data.decode("utf-8")
    except (ValueError, UnicodeError):
        return None
    return owner if owner and _b64url(data) == segment else None


class RenditionSigner:
    def __init__(self, keys: tuple[bytes, ...], window: int, clock: Callable[[], datetime]) -> None:
        assert keys
        self._keys = keys  # the first signs; every one verifies (a key being rotated out)
        self._window = window
        self._clock = clock

    @staticmethod
    def _signature(
        key: bytes, owner: str, image_id: str, edition: str, spec: str, expires: int
    ) -> str:
        message = f"{owner}\n{image_id}\n{edition}\n{spec}\n{expires}".encode()
        return _b64url(hmac.new(key, message, hashlib.sha256).digest())

    def sign(
        self, owner: str, image_id: str, spec: RenditionSpec, edition: str = ""
    ) -> SignedRendition:
        """``/r/<owner, base64url>/<image id>/<edition>/<rendition>/<expires>/<signature>``
        (no edition segment when there is none: an original's URL)."""
        now = int(self._clock().timestamp())
        # The end of the next window: the same URL all through this one.
        expires = (now // self._window + 2) * self._window
        signature = self._signature(self._keys[0], owner, image_id, edition, spec.path, expires)
        segments = [owner_segment(owner), image_id, edition, spec.path, str(expires), signature]
        return SignedRendition(
            path="/r/" + "/".join(segment for segment in segments if segment),
            expires_at=datetime.fromtimestamp(expires, self._clock().tzinfo),
        )

    def verify(
        self,
        owner_segment: str,
        image_id: str,
        spec_path: str,
        expires: str,
        signature: str,
        *,
        edition: str = "",
    ) -> tuple[str, RenditionSpec, int]:
        """(owner, rendition, expiry) of a URL's segments, if it was signed here, is spelt as
        it was signed, and is live."""
        refused = RenditionUrlRefused("invalid_signature")
        owner = _canonical_owner(owner_segment)
        spec = RenditionSpec.parse(spec_path)
        if (
            owner is None
            or spec is None
            or len(edition) not in (0, _EDITION_LENGTH)
            or not all(c in "0123456789abcdef" for c in edition)
            or not (expires.isascii() and expires.isdigit())
            or len(expires) > _MAX_EXPIRY_DIGITS
            or expires != str(int(expires))  # no leading zero
            or len(signature) != _SIGNATURE_LENGTH
            or not signature.isascii()
        ):
            raise refused
        expiry = int(expires)
        given = signature.encode("ascii")
        if not any(
            hmac.compare_digest(
                self._signature(key, owner, image_id, edition, spec_path, expiry).encode(),
                given,
            )
            for key in self._keys
        ):
            raise refused
        if expiry <= self._clock().timestamp():
            raise RenditionUrlRefused("url_expired")
        return owner, spec, expiry


Render = Callable[
    [bytes, RenditionSpec, str, FocalPoint | None, Callable[[], None]], Awaitable[RenderedVariant]
]
"""Renders (bytes, rendition, format, the image's focal point) off the event loop; calls its
last argument, on the loop, once the render has really finished (its thread is free again),
even if the awaiting request gave up long before: the bound on renders counts renders, not
requests."""


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
        delete_objects: Callable[[list[str]], Awaitable[None]],
        render: Render,
        limiter: TokenBucketLimiter,
        observe: Callable[[str, float | None], None],
    ) -> None:
        self._policy = policy
        self.signer = signer
        self._get_record = get_record
        self._read = read_object
        self._write = write_object
        self._delete = delete_objects
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
        self._renders = Holds(
            resource="renders",
            code="too_many_renders",
            per_user=policy.max_renders_per_user,
            per_process=policy.max_renders,
            process_full=lambda _limit: RendersBusy(),
        )

    @property
    def rendering(self) -> int:
        """Renders running now (their threads busy), whoever is still waiting for them."""
        return self._renders.total

    @staticmethod
    def key(owner: str, image_id: str, spec: RenditionSpec, fmt: str, edition: str) -> str:
        """Under the image's prefix (its delete removes them) and its edition: the crop's
        inputs are in the key, so another focal point is another object."""
        crop = f"-{spec.gravity}" if spec.gravity else ""
        name = f"{spec.width or 0}x{spec.height or 0}-{spec.fit}{crop}-q{spec.quality or 0}"
        return f"{image_prefix(owner, image_id)}r/{edition}/{name}.{_EXTENSIONS[fmt]}"

    def sign_for(self, record: ImageRecord, spec: RenditionSpec) -> SignedRendition:
        """The delivery URL of a rendition of ``record``, which its caller may see."""
        _require_ready(record)
        return self.signer.sign(
            record.user_id, record.image_id, spec.for_image(record), edition(record)
        )

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
        self,
        owner: str,
        image_id: str,
        spec: RenditionSpec,
        made_from: str,
        *,
        accept: str,
        if_none_match: str,
    ) -> Delivery:
        """The rendition of the image's edition ``made_from`` (what its URL was signed for):
        an image since changed (new bytes, another focal point) answers 404 to the old URL."""
        # First, whatever is cached: an image that is not ready has no rendition to serve.
        record = await self._ready(owner, image_id)
        if made_from != edition(record):
            raise ImageNotFound(image_id)
        fmt = spec.negotiated(accept)
        key = self.key(owner, image_id, spec, fmt, made_from)
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
                stored = await self._single_flight(key, record, spec, fmt)
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

    async def _ready(self, owner: str, image_id: str) -> ImageRecord:
        """The image, if it is ready now; else 404 (never which state hides it: the URL is
        not a credential of the owner's) and nothing of it stays cached here."""
        record = await self._get_record(owner, image_id)
        if record is None or record.status is not ImageStatus.READY:
            self.forget(owner, image_id)
            raise ImageNotFound(image_id)
        return record

    async def _single_flight(
        self, key: str, record: ImageRecord, spec: RenditionSpec, fmt: str
    ) -> tuple[bytes, str]:
        running = self._in_flight.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[tuple[bytes, str]] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            result = await self._render_once(key, record, spec, fmt)
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
        self, key: str, record: ImageRecord, spec: RenditionSpec, fmt: str
    ) -> tuple[bytes, str]:
        owner = record.user_id
        try:
            self._renders.take(owner)
        except ServiceError:
            self._observe("refused", None)
            raise
        handed_over = False  # once the renderer has it, the render's end gives the slot back
        try:
            try:
                self._limiter.take(owner)
            except RateLimited:
                self._observe("refused", None)
                raise
            original = await self._read(record.s3_key)
            if original is None:
                raise BackendUnavailable("s3", "original missing")
            started = time.perf_counter()
            handed_over = True
            rendered = await self._render(
                original[0], spec, fmt, record.focal, lambda: self._renders.give_back(owner)
            )
            self._observe("rendered", time.perf_counter() - started)
            etag = await self._write(key, rendered.data, rendered.content_type)
        finally:
            if not handed_over:
                self._renders.give_back(owner)
        await self._unless_gone(record, key)
        return rendered.data, etag

    async def _unless_gone(self, record: ImageRecord, key: str) -> None:
        """A render that outlived its image: a delete that listed the image's keys before this
        one was stored left it behind, so it is removed here, and nothing is served."""
        current = await self._get_record(record.user_id, record.image_id)
        if current is not None and current.status is ImageStatus.READY:
            return
        await self._delete([key])
        self.forget(record.user_id, record.image_id)
        raise ImageNotFound(record.image_id)
