"""Scoped API keys: a backend's credential, narrower than its owner's token.

A key is made by its owner (with a user token, never with another key) and shown once:
``isk_<key id>_<secret>``. The recognizable prefix lets secret scanners find a leaked one. The
service keeps only the SHA-256 of the secret: the secret is 256 random bits, so a fast hash is
as strong as a slow one, and a stolen table holds no usable key. The hash is compared in
constant time.

A key acts for its owner only (never as an admin), until it expires or is revoked, and only
within its scopes: every route declares the scope it needs (``web/routes.py``), and a key
without it is refused with 403 ``missing_scope``, naming the scope. Managing keys needs the
owner's token (403 ``user_token_required``).

Lookups are remembered for ``cache_seconds`` (``IMAGE_SERVICE_API_KEY_CACHE_SECONDS``, 30) in
each process, so a busy backend costs one read per key per process per half-minute. That is the
revocation bound: a revoked (or expired) key is refused by every replica within it. When a key
was last used is written at most once a minute per key and process (``last_used_at``, exact to
the minute), never once per request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from cachetools import LRUCache

from image_service.domain.errors import Conflict, InvalidRequest, ServiceError, Unauthenticated
from image_service.domain.models import Principal
from image_service.domain.ports import Clock

KEY_PREFIX = "isk_"
SCOPES = ("images:read", "images:write", "images:delete", "shares:write", "albums:write")
# The keys one owner may hold at once (each is a standing credential to watch over).
MAX_KEYS_PER_USER = 50
MAX_NAME_LENGTH = 100
# How often each process writes a key's last use, per key.
LAST_USED_SECONDS = 60
_TOKEN = re.compile(r"^isk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_REMEMBERED = 10_000  # keys (and unknown tokens) each process remembers


class KeyRefused(ServiceError):
    """A key used where it cannot be: a scope it lacks, or a route for user tokens only."""

    http_status = 403
    code = "missing_scope"


class ApiKeyNotFound(ServiceError):
    http_status = 404
    code = "api_key_not_found"

    def __init__(self, key_id: str) -> None:
        super().__init__("No such API key.", details={"key_id": key_id})


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    owner: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class StoredKey:
    key: ApiKey
    secret_hash: str  # hex SHA-256 of the secret


class ApiKeyStore(Protocol):
    async def create_key(self, stored: StoredKey, *, max_keys: int) -> bool:
        """False when the owner holds ``max_keys`` already."""
        ...

    async def owner_keys(self, owner: str) -> list[ApiKey]: ...

    async def key_by_id(self, key_id: str) -> StoredKey | None: ...

    async def revoke_key(self, owner: str, key_id: str) -> bool:
        """False when the owner has no such key."""
        ...

    async def keys_used(self, uses: Sequence[tuple[str, str, datetime]]) -> None:
        """Records (owner, key id, when) as each key's last use."""
        ...


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token() -> tuple[str, str, str]:
    """(key id, secret, the token as shown once)."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return key_id, secret, f"{KEY_PREFIX}{key_id}_{secret}"


def user_token_only(principal: Principal) -> None:
    if principal.scopes is not None:
        raise KeyRefused(
            "API keys are managed with the owner's own token, not with a key.",
            code="user_token_required",
        )


def require_scope(principal: Principal, scope: str) -> None:
    """Refuses a key without ``scope`` (a user token has every scope)."""
    if principal.scopes is not None and scope not in principal.scopes:
        raise KeyRefused(
            f"This API key lacks the {scope} scope.",
            details={"scope": scope, "key_scopes": sorted(principal.scopes)},
        )


class ApiKeys:
    def __init__(self, store: ApiKeyStore, *, cache_seconds: float, clock: Clock) -> None:
        self._store = store
        self._cache_seconds = cache_seconds
        self._clock = clock
        # token hash -> (the key, or None for no such key; remembered until)
        self._known: LRUCache[str, tuple[StoredKey | None, float]] = LRUCache(_REMEMBERED)
        # key id -> (owner, last use) not yet written; and when each was last written
        self._uses: dict[str, tuple[str, datetime]] = {}
        self._written: dict[str, float] = {}

    async def create(
        self,
        principal: Principal,
        *,
        name: str,
        scopes: Sequence[str],
        expires_at: datetime | None,
    ) -> tuple[ApiKey, str]:
        """A new key of the caller's and its token, which is never shown again."""
        user_token_only(principal)
        now = self._clock()
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown or not scopes:
            raise InvalidRequest(
                "Scopes are one or more of: " + ", ".join(SCOPES) + ".",
                code="invalid_scopes",
                details={"unknown": unknown, "allowed": list(SCOPES)},
            )
        if expires_at is not None and expires_at <= now:
            raise InvalidRequest("expires_at is in the past.", code="invalid_expiry")
        key_id, secret, token = new_token()
        key = ApiKey(
            key_id=key_id,
            owner=principal.user_id,
            name=name,
            scopes=tuple(scope for scope in SCOPES if scope in scopes),
            created_at=now,
            expires_at=expires_at,
        )
        if not await self._store.create_key(
            StoredKey(key, secret_hash(secret)), max_keys=MAX_KEYS_PER_USER
        ):
            raise Conflict(
                f"An owner holds at most {MAX_KEYS_PER_USER} API keys; revoke one first.",
                code="too_many_api_keys",
                details={"max_keys": MAX_KEYS_PER_USER},
            )
        return key, token

    async def list(self, principal: Principal) -> list[ApiKey]:
        user_token_only(principal)
        keys = await self._store.owner_keys(principal.user_id)
        return sorted(keys, key=lambda key: (key.created_at, key.key_id), reverse=True)

    async def revoke(self, principal: Principal, key_id: str) -> None:
        user_token_only(principal)
        if not await self._store.revoke_key(principal.user_id, key_id):
            raise ApiKeyNotFound(key_id)
        self._forget(key_id)  # at once here; on other replicas within the cache's life

    async def verify(self, token: str) -> Principal:
        """The principal a key token stands for, or Unauthenticated."""
        match = _TOKEN.match(token)
        if match is None:
            raise Unauthenticated("Not a valid API key.", code="invalid_token")
        key_id, secret = match.groups()
        digest = secret_hash(secret)
        moment = time.monotonic()
        remembered = self._known.get(digest)
        if remembered is not None and remembered[1] > moment:
            stored = remembered[0]
        else:
            stored = await self._store.key_by_id(key_id)
            self._known[digest] = (stored, moment + self._cache_seconds)
        if stored is None or not hmac.compare_digest(stored.secret_hash, digest):
            raise Unauthenticated("Not a valid API key.", code="invalid_token")
        key = stored.key
        now = self._clock()
        if key.expires_at is not None and key.expires_at <= now:
            raise Unauthenticated("This API key has expired.", code="token_expired")
        self._uses[key.key_id] = (key.owner, now)
        return Principal(
            user_id=key.owner,
            expires_at=None if key.expires_at is None else key.expires_at.timestamp(),
            scopes=frozenset(key.scopes),
            key_id=key.key_id,
        )

    def _forget(self, key_id: str) -> None:
        for digest, (stored, _) in list(self._known.items()):
            if stored is not None and stored.key.key_id == key_id:
                del self._known[digest]

    async def write_uses(self, *, at_exit: bool = False) -> None:
        """Writes the last use of each key used since its last write a minute or more ago
        (``at_exit``: every one, the process is stopping)."""
        moment = time.monotonic()
        due = [
            (owner, key_id, used)
            for key_id, (owner, used) in self._uses.items()
            if at_exit or moment - self._written.get(key_id, float("-inf")) >= LAST_USED_SECONDS
        ]
        if not due:
            return
        await self._store.keys_used(due)
        for _, key_id, _ in due:
            self._uses.pop(key_id, None)
            self._written[key_id] = moment
        if len(self._written) > _REMEMBERED:
            self._written.clear()

    def with_last_use(self, key: ApiKey) -> ApiKey:
        """``key`` with this process's unwritten last use, if later than the stored one."""
        pending = self._uses.get(key.key_id)
        if pending is None or (key.last_used_at is not None and key.last_used_at >= pending[1]):
            return key
        return replace(key, last_used_at=pending[1])
