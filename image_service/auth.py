"""Bearer tokens: verifying the caller's JWT, and minting tokens for the CLI and tests."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import jwt

from image_service.errors import Unauthenticated
from image_service.models import Principal

ALGORITHM = "HS256"
ADMIN_SCOPE = "admin"
# Leaves room for IdP subjects such as "auth0|abc" or e-mail addresses, and no more.
MAX_SUBJECT_LENGTH = 256


class TokenVerifier:
    def __init__(
        self, secret: str, *, audience: str | None = None, issuer: str | None = None
    ) -> None:
        self._secret = secret
        self._audience = audience
        self._issuer = issuer

    def verify(self, authorization: str | None) -> Principal:
        """The principal behind an ``Authorization`` header value, or Unauthenticated."""
        if not authorization:
            raise Unauthenticated(
                "Authorization: Bearer <token> is required.", code="missing_token"
            )
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("Authorization must use the Bearer scheme.", code="invalid_token")
        try:
            claims = jwt.decode(
                token.strip(),
                self._secret,
                # One algorithm, fixed here: the token's own header never chooses it.
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("The token has expired.", code="token_expired") from None
        except jwt.PyJWTError:
            raise Unauthenticated("The token is invalid.", code="invalid_token") from None
        return _principal(claims)


def _principal(claims: Mapping[str, Any]) -> Principal:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > MAX_SUBJECT_LENGTH:
        raise Unauthenticated("The token's subject is invalid.", code="invalid_token")
    scope = claims.get("scope", "")
    scopes = scope.split() if isinstance(scope, str) else scope if isinstance(scope, list) else []
    return Principal(user_id=subject, is_admin=ADMIN_SCOPE in scopes)


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
    return jwt.encode(claims, secret, algorithm=ALGORITHM)
