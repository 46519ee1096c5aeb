"""The API's shell: its middlewares, routes, pages, OpenAPI document and security headers. The
one app factory (programs/app.py) gives it the backends' lifetime; it does no I/O itself."""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import aiohttp
from aiohttp import web
from aiohttp_apispec import validation_middleware

from image_service import __version__
from image_service.auth.jwks import JwksCache
from image_service.auth.tokens import TokenVerifier
from image_service.metrics import ServiceMetrics
from image_service.settings import PREFIX, Settings, SettingsError
from image_service.web.keys import (
    METRICS,
    SETTINGS,
    TOKEN_VERIFIER,
    WATCHER,
)
from image_service.web.middlewares import (
    RequestParser,
    authenticate,
    cors,
    deadline,
    error_envelope,
    observe,
)
from image_service.web.openapi import setup_openapi
from image_service.web.page import setup_page
from image_service.web.routes import setup_routes

API_DESCRIPTION = (
    "Presigned direct-to-S3 image uploads with metadata in DynamoDB. Ask for an upload URL, send "
    "the bytes straight to S3, then complete the upload so the service verifies what arrived. "
    "Every /images route takes `Authorization: Bearer <JWT>`; errors are "
    '`{"error": {"code", "message", "details"}}`.'
)


async def _token_verifier(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with AsyncExitStack() as stack:
        jwks = None
        if settings.jwt_jwks_url:
            if not settings.jwt_audience and not settings.jwt_any_audience:
                # The same check as Settings.from_env, for settings built in code.
                raise SettingsError(
                    f"{PREFIX}JWT_AUDIENCE: is required with {PREFIX}JWT_JWKS_URL "
                    f"({PREFIX}JWT_ANY_AUDIENCE=true accepts every audience)"
                )
            http = await stack.enter_async_context(aiohttp.ClientSession())
            jwks = JwksCache(
                settings.jwt_jwks_url,
                http,
                min_refresh_interval=settings.jwks_min_refresh_seconds,
                max_age=settings.jwks_max_age_seconds,
            )
        app[TOKEN_VERIFIER] = TokenVerifier(
            settings.jwt_secret or None,
            previous_secret=settings.jwt_previous_secret,
            jwks=jwks,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
        )
        yield


async def _end_streams(app: web.Application) -> None:
    """Event streams never end on their own: on shutdown they are ended first, so that they
    do not hold the process for its whole grace period."""
    if WATCHER in app:
        app[WATCHER].close_streams()


Lifetime = Callable[[web.Application], AsyncIterator[None]]


def api_shell(settings: Settings, *, backends: Lifetime, dev_tokens: bool) -> web.Application:
    """The app around ``backends``, the cleanup context that opens what the handlers reach
    (their app keys, web/keys.py) for the app's whole life."""
    app = web.Application(
        # The API never carries image bytes, so every body is small JSON.
        client_max_size=settings.max_json_body_bytes,
        middlewares=[
            observe,
            cors(settings.cors_origins),
            error_envelope,
            deadline(settings.request_timeout_seconds),
            authenticate,
            validation_middleware,
        ],
    )
    app[SETTINGS] = settings
    app[METRICS] = ServiceMetrics()
    app.on_shutdown.append(_end_streams)
    app.cleanup_ctx.append(_token_verifier)
    app.cleanup_ctx.append(backends)
    app.on_response_prepare.append(_security_headers)
    setup_routes(app)
    setup_page(app, dev_tokens=dev_tokens)
    setup_openapi(app, title="image_service", version=__version__, description=API_DESCRIPTION)
    with warnings.catch_warnings():
        # aiohttp-apispec looks its parser up under this string key; ours fails into the envelope.
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        app["_apispec_parser"] = RequestParser()
    return app


# Nothing the API answers is a page to run or frame, bar the two pages that say otherwise.
_API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


@functools.lru_cache(maxsize=4)
def _docs_policy(page: bytes) -> str:
    """The docs page's policy: its own scripts and styles (the bundled Swagger UI, and its one
    inline start-up script by hash), the spec from here, and never inside a frame."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(page)
    )
    return (
        f"default-src 'none'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'none'"
    )


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if request.path.rstrip("/") == "/docs" and isinstance(response, web.Response):
        body = response.body if isinstance(response.body, bytes) else b""
        response.headers["Content-Security-Policy"] = _docs_policy(body)
        response.headers["X-Frame-Options"] = "DENY"
    elif not request.path.startswith("/docs/static"):
        response.headers.setdefault("Content-Security-Policy", _API_POLICY)
