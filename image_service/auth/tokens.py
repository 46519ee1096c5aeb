"""Bearer tokens: verifying the caller's JWT, and minting tokens for the CLI and tests."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any, TypeGuard

import jwt
from cachetools import LRUCache

from image_service.auth.jwks import JwksCache
from image_service.domain.errors import Unauthenticated
from image_service.domain.models import Principal

HS256 = "HS256"
RS256 = "RS256"
ADMIN_SCOPE = "admin"
# Leaves room for IdP subjects such as "auth0|abc" or e-mail addresses, and no more. Counted in
# UTF-8 bytes: the subject, percent-encoded (up to 3x), is an S3 key prefix (keys hold 1,024
# bytes) and part of DynamoDB index keys (2,048 bytes).
MAX_SUBJECT_BYTES = 256
# Verified tokens are remembered (a client sends the same one with every request) for at most
# this long and never past their expiry; after that the signature is checked again, so a key the
# IdP withdrew stops working within this time.
VERIFIED_TOKEN_SECONDS = 60.0
VERIFIED_TOKENS_KEPT = 10_000


class TokenVerifier:
    """Verifies bearer JWTs: HS256 with the shared secret, RS256 with keys from a JWKS URL.

    Each algorithm is bound to its own kind of key, chosen here and never by the token: an HS256
    token is only ever checked against the shared secret, an RS256 one only against the IdP's
    public keys. That closes algorithm confusion (an HS256 token "signed" with a public key) and
    ``alg: none``, whatever the token's header claims.
    """

    def __init__(
        self,
        secret: str | None,
        *,
        previous_secret: str | None = None,
        jwks: JwksCache | None = None,
        audience: str | None = None,
        issuer: str | None = None,
    ) -> None:
        self._secret = secret
        # The key being rotated out: tokens it signed stay valid until the operator unsets it.
        self._previous_secret = previous_secret if secret else None
        self._jwks = jwks
        self._audience = audience
        self._issuer = issuer
        # token -> (principal, usable from, usable until); the least recently used go first.
        self._verified: LRUCache[str, tuple[Principal, float, float]] = LRUCache(
            maxsize=VERIFIED_TOKENS_KEPT
        )

    async def verify(self, authorization: str | None) -> Principal:
        """The principal behind an ``Authorization`` header value, or Unauthenticated."""
        if not authorization:
            raise Unauthenticated(
                "Authorization: Bearer <token> is required.", code="missing_token"
            )
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("Authorization must use the Bearer scheme.", code="invalid_token")
        now = time.time()
        remembered = self._verified.get(token)
        if remembered is not None:
            principal, usable_from, usable_until = remembered
            if usable_from <= now < usable_until:
                return principal
            del self._verified[token]
        principal, claims = await self._verify(token)
        self._remember(token, principal, claims, now)
        return principal

    def _remember(
        self, token: str, principal: Principal, claims: Mapping[str, Any], now: float
    ) -> None:
        expires = float(claims["exp"])  # required, and checked numeric by PyJWT
        not_before = claims.get("nbf")
        usable_from = float(not_before) if isinstance(not_before, int | float) else 0.0
        self._verified[token] = (principal, usable_from, min(expires, now + VERIFIED_TOKEN_SECONDS))

    async def _verify(self, token: str) -> tuple[Principal, Mapping[str, Any]]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("The token is invalid.", code="invalid_token") from None
        algorithm = header.get("alg")
        keys: list[str | jwt.PyJWK]
        if algorithm == HS256 and self._secret:
            keys = [self._secret]
            if self._previous_secret:
                keys.append(self._previous_secret)
        elif algorithm == RS256 and self._jwks is not None:
            kid = header.get("kid")
            keys = [await self._jwks.key_for(kid if isinstance(kid, str) else None)]
        else:
            raise Unauthenticated("The token's algorithm is not accepted.", code="invalid_token")
        for key in keys:
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=[algorithm],
                    audience=self._audience,
                    issuer=self._issuer,
                    options={"require": ["exp", "sub"], "verify_aud": self._audience is not None},
                )
                break
            except jwt.InvalidSignatureError:
                continue  # perhaps signed with the key being rotated out
            except jwt.ExpiredSignatureError:
                raise Unauthenticated("The token has expired.", code="token_expired") from None
            except jwt.PyJWTError:
                raise Unauthenticated("The token is invalid.", code="invalid_token") from None
        else:
            raise Unauthenticated("The token is invalid.", code="invalid_token")
        return _principal(claims), claims


# A subject becomes a DynamoDB key, an S3 prefix and a log field: printable Unicode only (no
# control characters, no lone surrogates, which cannot be stored).
_UNSAFE_SUBJECT = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def valid_subject(subject: object) -> TypeGuard[str]:
    """Whether ``subject`` can name an owner (a token's subject, or an operator's ``--user``)."""
    return (
        isinstance(subject, str)
        and bool(subject)
        and not _UNSAFE_SUBJECT.search(subject)
        and len(subject.encode()) <= MAX_SUBJECT_BYTES
    )


def _principal(claims: Mapping[str, Any]) -> Principal:
    subject = claims.get("sub")
    if not valid_subject(subject):
        raise Unauthenticated("The token's subject is invalid.", code="invalid_token")
    scope = claims.get("scope", "")
    scopes = scope.split() if isinstance(scope, str) else scope if isinstance(scope, list) else []
    return Principal(
        user_id=subject, is_admin=ADMIN_SCOPE in scopes, expires_at=float(claims["exp"])
    )


# `image-service dev` mints tokens for this user, valid this long.
DEV_USER = "demo-user"
DEV_TOKEN_TTL_SECONDS = 24 * 3600


def issue_token(
    secret: str,
    user_id: str,
    *,
    admin: bool = False,
    ttl_seconds: int = 3600,
    audience: str | None = None,
    issuer: str | None = None,
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user_id, "iat": now, "exp": now + ttl_seconds}
    if admin:
        claims["scope"] = ADMIN_SCOPE
    if audience:
        claims["aud"] = audience
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm=HS256)
