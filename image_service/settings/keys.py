"""The keys derived from the settings' secrets: each kind of signature its own key, so that no
signature of one kind can double as another's, and each with the key being rotated out."""

from __future__ import annotations

import base64
import hashlib
import hmac

from image_service.settings.groups import IdentitySettings, RenditionSettings, WebhookSettings


def render_keys(renditions: RenditionSettings, identity: IdentitySettings) -> tuple[bytes, ...]:
    """The keys of rendition URLs: the one that signs, then the one being rotated out."""
    if renditions.render_secret:
        keys = [renditions.render_secret, renditions.render_previous_secret]
        return tuple(key.encode() for key in keys if key)
    # Derived apart from the token and cursor keys: no URL signature can double as either.
    # (Under JWKS there is no JWT secret, and the cursor secret is required instead.)
    bases = [identity.jwt_secret or identity.cursor_secret, identity.jwt_previous_secret]
    return tuple(_derived(base, b"image-service/render") for base in bases if base)


def cursor_keys(settings: IdentitySettings) -> tuple[bytes, ...]:
    """The keys of list cursors: the one that signs, then the one being rotated out."""
    if settings.cursor_secret:
        return (settings.cursor_secret.encode(),)
    # A key of its own, derived so that a cursor can never double as a token signature.
    bases = [settings.jwt_secret, settings.jwt_previous_secret]
    return tuple(_derived(base, b"image-service/cursor") for base in bases if base)


def callback_masters(settings: WebhookSettings) -> tuple[str, ...]:
    """The master keys the per-owner callback keys derive from: the current one first."""
    if settings.callback_secret:
        return tuple(s for s in (settings.callback_secret, settings.callback_previous_secret) if s)
    # Derived apart from the operator's key, so that no owner's key can sign for the operator.
    bases = [settings.webhook_secret, settings.webhook_previous_secret]
    return tuple(
        "whsec_" + base64.b64encode(_derived(base, b"image-service/callbacks")).decode()
        for base in bases
        if base
    )


def _derived(base: str, label: bytes) -> bytes:
    return hmac.new(base.encode(), label, hashlib.sha256).digest()
