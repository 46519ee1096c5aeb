"""Share links: a bearer capability to see some of one owner's images, with no account.

A link names one image, a set of images (up to 100), an album, or a tag. It is answered once,
``/s/<share id>_<secret>``: the secret is 128 random bits, of which the service keeps only the
SHA-256, compared in constant time; the id (64 bits, not secret) keys the link's item and its
rendition URLs. Nothing a link answers names the owner, the original's key, a position, or an
image outside its target.

A link ends at its expiry (``expires_at``, or ``ttl``; 7 days by default, a year at most), when
its owner revokes it (answered 410 at once on every replica: each request reads the link's item,
consistently), or after ``max_views`` views. A password, if it has one, is kept as scrypt, and
wrong guesses are limited per link and per client address (429). An image in the trash,
quarantined or deleted is left out of every link at once, and its renditions refused.

Views: a link with ``max_views`` counts each view with one conditional write, so the limit
holds exactly across replicas; a link without counts in each process's memory and writes the
sum every ``VIEW_FLUSH_SECONDS`` (its list shows views up to that late, and a process killed
loses its unwritten ones).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol

from image_service.domain.errors import Conflict, InvalidRequest, ServiceError
from image_service.domain.models import ImageRecord, ImageStatus, Principal
from image_service.domain.owners import owner_for
from image_service.domain.ports import Clock
from image_service.domain.ratelimit import TokenBucketLimiter
from image_service.domain.renditions import RenditionSigner, RenditionSpec, edition

log = logging.getLogger(__name__)

MAX_SHARES_PER_USER = 1000
MAX_SHARED_IMAGES = 100
DEFAULT_TTL = timedelta(days=7)
MAX_TTL = timedelta(days=365)
VIEW_FLUSH_SECONDS = 10
_TOKEN = re.compile(r"^([0-9a-f]{16})_([A-Za-z0-9_-]{22})$")
# Password guesses: per link, and per client address, a minute's worth.
GUESSES_PER_LINK_PER_MINUTE = 10
GUESSES_PER_ADDRESS_PER_MINUTE = 30
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


class ShareGone(ServiceError):
    """An expired, revoked or used-up link: 410."""

    http_status = 410
    code = "share_gone"


class ShareNotFound(ServiceError):
    http_status = 404
    code = "share_not_found"

    def __init__(self) -> None:
        super().__init__("No such share link.")


class PasswordRequired(ServiceError):
    http_status = 401
    code = "password_required"


@dataclass(frozen=True, slots=True)
class ShareTarget:
    """Exactly one of these."""

    image_ids: tuple[str, ...] = ()
    album_id: str | None = None
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class Share:
    share_id: str
    owner: str
    target: ShareTarget
    created_at: datetime
    expires_at: datetime
    allow_download: bool
    presets: tuple[str, ...]
    max_views: int | None = None
    views: int = 0
    has_password: bool = False
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class StoredShare:
    share: Share
    secret_hash: str
    password_hash: str | None = None  # "salt$hash", hex


@dataclass(frozen=True, slots=True)
class SharedPage:
    share: Share
    images: list[ImageRecord]
    next_cursor: str | None = None


class ShareStore(Protocol):
    async def create_share(self, stored: StoredShare, *, max_shares: int) -> bool: ...

    async def share_by_id(self, share_id: str) -> StoredShare | None:
        """Read consistently: a revocation is seen at once."""
        ...

    async def owner_shares(self, owner: str) -> list[Share]: ...

    async def revoke_share(self, owner: str, share_id: str, *, at: datetime) -> bool: ...

    async def count_view(self, share: Share, *, max_views: int) -> bool:
        """Counts one view; False when ``max_views`` were counted already."""
        ...

    async def add_views(self, counts: Sequence[tuple[str, str, int]]) -> None:
        """Adds (owner, share id, views) to each link's count."""
        ...


class SharedImages(Protocol):
    """What a link reads of its owner's images."""

    async def get_many(self, keys: Sequence[tuple[str, str]]) -> list[ImageRecord]: ...


class TargetPages(Protocol):
    """A page of an album's or a tag's images, as their own listings read them."""

    async def album_page(
        self, owner: str, album_id: str, limit: int, cursor: str | None
    ) -> tuple[list[ImageRecord], str | None]: ...

    async def tag_page(
        self, owner: str, tag: str, limit: int, cursor: str | None
    ) -> tuple[list[ImageRecord], str | None]: ...


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return f"{salt.hex()}${digest.hex()}"


def password_matches(password: str, stored: str) -> bool:
    salt, _, expected = stored.partition("$")
    digest = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), **_SCRYPT)
    return hmac.compare_digest(digest.hex(), expected)


@dataclass
class _Views:
    """Views counted here and not yet written, by (owner, share id)."""

    pending: dict[tuple[str, str], int] = field(default_factory=dict)


class Shares:
    def __init__(
        self,
        store: ShareStore,
        images: SharedImages,
        pages: TargetPages,
        *,
        presets: Sequence[str],
        clock: Clock,
        on_view: Callable[[Share], Awaitable[None]] | None = None,
    ) -> None:
        self._on_view = on_view  # share.viewed, when the operator asked for it
        self._store = store
        self._images = images
        self._pages = pages
        self._presets = tuple(presets)
        self._clock = clock
        self._views = _Views()
        self._per_link = TokenBucketLimiter(
            per_minute=GUESSES_PER_LINK_PER_MINUTE,
            burst=GUESSES_PER_LINK_PER_MINUTE,
            limited="password attempts",
        )
        self._per_address = TokenBucketLimiter(
            per_minute=GUESSES_PER_ADDRESS_PER_MINUTE,
            burst=GUESSES_PER_ADDRESS_PER_MINUTE,
            limited="password attempts",
        )

    @property
    def presets(self) -> tuple[str, ...]:
        return self._presets

    async def create(
        self,
        principal: Principal,
        user_id: str | None,
        *,
        target: ShareTarget,
        expires_at: datetime | None,
        ttl: timedelta | None,
        password: str | None,
        allow_download: bool,
        max_views: int | None,
        presets: Sequence[str] | None,
    ) -> tuple[Share, str]:
        """A new link of the owner's and its token, which is never shown again."""
        owner = owner_for(principal, user_id)
        now = self._clock()
        if expires_at is None:
            expires_at = now + (ttl or DEFAULT_TTL)
        if expires_at <= now or expires_at - now > MAX_TTL:
            raise InvalidRequest(
                f"A link lives from a moment to {MAX_TTL.days} days.", code="invalid_expiry"
            )
        chosen = tuple(self._presets if presets is None else dict.fromkeys(presets))
        unknown = sorted(set(chosen) - set(self._presets))
        if unknown or not chosen:
            raise InvalidRequest(
                "Presets are one or more of the service's: " + ", ".join(self._presets) + ".",
                code="invalid_presets",
                details={"unknown": unknown, "allowed": list(self._presets)},
            )
        if target.image_ids:
            keys = [(owner, image_id) for image_id in target.image_ids]
            found = {record.image_id for record in await self._images.get_many(keys)}
            missing = [image_id for image_id in target.image_ids if image_id not in found]
            if missing:
                raise InvalidRequest(
                    "Share only your own images.",
                    code="unknown_images",
                    details={"image_ids": missing},
                )
        share_id, secret = secrets.token_hex(8), secrets.token_urlsafe(16)
        share = Share(
            share_id=share_id,
            owner=owner,
            target=target,
            created_at=now,
            expires_at=expires_at,
            allow_download=allow_download,
            presets=chosen,
            max_views=max_views,
            has_password=password is not None,
        )
        stored = StoredShare(
            share, _hash(secret), None if password is None else hash_password(password)
        )
        if not await self._store.create_share(stored, max_shares=MAX_SHARES_PER_USER):
            raise Conflict(
                f"An owner holds at most {MAX_SHARES_PER_USER} links; revoke some first.",
                code="too_many_shares",
                details={"max_shares": MAX_SHARES_PER_USER},
            )
        return share, f"{share_id}_{secret}"

    async def of_owner(self, principal: Principal, user_id: str | None) -> list[Share]:
        owner = owner_for(principal, user_id)
        shares = await self._store.owner_shares(owner)
        return sorted(
            (self._with_pending_views(share) for share in shares),
            key=lambda share: (share.created_at, share.share_id),
            reverse=True,
        )

    async def revoke(self, principal: Principal, share_id: str, user_id: str | None) -> None:
        owner = owner_for(principal, user_id)
        if not await self._store.revoke_share(owner, share_id, at=self._clock()):
            raise ShareNotFound()

    async def open(
        self,
        token: str,
        *,
        password: str | None,
        client: str,
        limit: int,
        cursor: str | None,
    ) -> SharedPage:
        """What the link shows (a page of its ready images), once it is live, its password
        right and a view is left; each call is a view."""
        share = await self.live(token, password=password, client=client)
        if share.max_views is not None:
            if not await self._store.count_view(share, max_views=share.max_views):
                raise ShareGone(
                    "This link has been viewed as often as it allows.", code="view_limit_reached"
                )
        else:
            key = (share.owner, share.share_id)
            self._views.pending[key] = self._views.pending.get(key, 0) + 1
        if self._on_view is not None:
            try:
                await self._on_view(share)
            except Exception as exc:  # a view is answered whatever its webhook's fate
                log.warning("share.viewed not sent: %s: %s", type(exc).__name__, exc)
        images, next_cursor = await self._target_page(share, limit, cursor)
        return SharedPage(share, images, next_cursor)

    async def exists(self, token: str) -> Share:
        """The link a token names if it is live (its password not asked yet): for its page."""
        stored = await self._stored(token)
        self._check_live(stored.share)
        return stored.share

    async def _stored(self, token: str) -> StoredShare:
        match = _TOKEN.match(token)
        if match is None:
            raise ShareNotFound()
        share_id, secret = match.groups()
        stored = await self._store.share_by_id(share_id)
        if stored is None or not hmac.compare_digest(stored.secret_hash, _hash(secret)):
            raise ShareNotFound()
        return stored

    def _check_live(self, share: Share) -> None:
        if share.revoked:
            raise ShareGone("This link was revoked.", code="share_revoked")
        if share.expires_at <= self._clock():
            raise ShareGone("This link has expired.", code="share_expired")

    async def live(self, token: str, *, password: str | None, client: str) -> Share:
        """The link a token names, if it is live and its password (if any) is given right."""
        stored = await self._stored(token)
        share = stored.share
        self._check_live(share)
        if stored.password_hash is not None:
            if password is None:
                raise PasswordRequired("This link needs its password.")
            self._per_link.take(share.share_id)
            self._per_address.take(client)
            matches = await asyncio.get_running_loop().run_in_executor(
                None, password_matches, password, stored.password_hash
            )
            if not matches:
                raise PasswordRequired("Wrong password.", code="wrong_password")
        return share

    async def for_delivery(self, share_id: str, image_id: str) -> tuple[Share, ImageRecord]:
        """A link's image for one of its signed URLs: only while the link is live and the
        image is ready and in its target (the URL's signature proves who made it)."""
        stored = await self._store.share_by_id(share_id)
        if stored is None:
            raise ShareNotFound()
        share = stored.share
        if share.revoked or share.expires_at <= self._clock():
            raise ShareGone("This link has ended.", code="share_gone")
        found = await self._images.get_many([(share.owner, image_id)])
        if not found or found[0].status is not ImageStatus.READY:
            raise ShareNotFound()
        record = found[0]
        target = share.target
        if target.image_ids and image_id not in target.image_ids:
            raise ShareNotFound()
        if target.album_id is not None and target.album_id not in record.albums:
            raise ShareNotFound()
        if target.tag is not None and target.tag not in record.tags:
            raise ShareNotFound()
        return share, record

    async def write_views(self) -> None:
        """Adds the views counted here since the last write to each link's count."""
        pending, self._views.pending = self._views.pending, {}
        if pending:
            try:
                await self._store.add_views(
                    [(owner, share_id, n) for (owner, share_id), n in pending.items()]
                )
            except Exception:
                for key, count in pending.items():  # written next time
                    self._views.pending[key] = self._views.pending.get(key, 0) + count
                raise

    def _with_pending_views(self, share: Share) -> Share:
        pending = self._views.pending.get((share.owner, share.share_id), 0)
        if not pending:
            return share
        return replace(share, views=share.views + pending)

    async def _target_page(
        self, share: Share, limit: int, cursor: str | None
    ) -> tuple[list[ImageRecord], str | None]:
        target = share.target
        if target.album_id is not None:
            return await self._pages.album_page(share.owner, target.album_id, limit, cursor)
        if target.tag is not None:
            return await self._pages.tag_page(share.owner, target.tag, limit, cursor)
        records = await self._images.get_many([(share.owner, i) for i in target.image_ids])
        by_id = {record.image_id: record for record in records}
        ready = [
            by_id[image_id]
            for image_id in target.image_ids
            if image_id in by_id and by_id[image_id].status is ImageStatus.READY
        ]
        return ready, None


# What a link's original download URL signs in place of a rendition: no size, no format.
ORIGINAL = RenditionSpec(width=None, height=None, fit="inside", format="auto", quality=None)


class ShareUrls:
    """The signed URLs a link hands out: its presets' renditions (``/s/r/...``) and, if it
    allows downloads, the originals (``/s/o/...``). Each names the link's id, never its owner
    nor an object's key, and each has its own key, derived from the renditions' keys: a URL of
    one kind is never valid as the other."""

    def __init__(self, keys: tuple[bytes, ...], window: int, clock: Clock) -> None:
        def derived(purpose: bytes) -> tuple[bytes, ...]:
            return tuple(hmac.new(key, purpose, hashlib.sha256).digest() for key in keys)

        self._renditions = RenditionSigner(derived(b"share renditions"), window, clock)
        self._originals = RenditionSigner(derived(b"share originals"), window, clock)

    def rendition(self, share_id: str, record: ImageRecord, spec: RenditionSpec) -> str:
        """A preset's URL for ``record``, of its current edition (renditions.edition)."""
        return (
            "/s"
            + self._renditions.sign(
                share_id, record.image_id, spec.for_image(record), edition(record)
            ).path
        )

    def original(self, share_id: str, image_id: str) -> str:
        # /r/<share>/<image>/<spec>/<expires>/<signature>, less its fixed spec.
        _, _, share, image, _, expires, signature = self._originals.sign(
            share_id, image_id, ORIGINAL
        ).path.split("/")
        return f"/s/o/{share}/{image}/{expires}/{signature}"

    def verify_rendition(
        self,
        share_segment: str,
        image_id: str,
        made_from: str,
        spec_path: str,
        expires: str,
        signature: str,
    ) -> tuple[str, RenditionSpec]:
        share_id, spec, _ = self._renditions.verify(
            share_segment, image_id, spec_path, expires, signature, edition=made_from
        )
        return share_id, spec

    def verify_original(
        self, share_segment: str, image_id: str, expires: str, signature: str
    ) -> str:
        share_id, _, _ = self._originals.verify(
            share_segment, image_id, ORIGINAL.path, expires, signature
        )
        return share_id
