"""The one app factory, used by the program and the tests alike. It does no I/O itself."""

from __future__ import annotations

import hashlib
import hmac
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from datetime import datetime

import aiohttp
from aiohttp import web
from aiohttp_apispec import validation_middleware

from image_service import __version__
from image_service.auth import TokenVerifier
from image_service.backends import aws_clients
from image_service.cursor import CursorCodec
from image_service.domain.images import ImageService, UploadPolicy, utc_now
from image_service.domain.ratelimit import TokenBucketLimiter
from image_service.inspection import InspectionLimits
from image_service.jwks import JwksCache
from image_service.settings import Settings
from image_service.storage.dynamo import ImageRepository
from image_service.storage.s3 import ObjectStore
from image_service.web.keys import (
    IMAGE_REPOSITORY,
    IMAGE_SERVICE,
    OBJECT_STORE,
    SETTINGS,
    TOKEN_VERIFIER,
)
from image_service.web.middlewares import RequestParser, authenticate, error_envelope
from image_service.web.openapi import setup_openapi
from image_service.web.routes import setup_routes

API_DESCRIPTION = (
    "Presigned direct-to-S3 image uploads with metadata in DynamoDB. Ask for an upload URL, send "
    "the bytes straight to S3, then complete the upload so the service verifies what arrived. "
    "Every /images route takes `Authorization: Bearer <JWT>`; errors are "
    '`{"error": {"code", "message", "details"}}`.'
)


def cursor_key(settings: Settings) -> bytes:
    if settings.cursor_secret:
        return settings.cursor_secret.encode()
    # A key of its own, derived so that a cursor can never double as a token signature.
    return hmac.new(settings.jwt_secret.encode(), b"image-service/cursor", hashlib.sha256).digest()


async def _token_verifier(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with AsyncExitStack() as stack:
        jwks = None
        if settings.jwt_jwks_url:
            http = await stack.enter_async_context(aiohttp.ClientSession())
            jwks = JwksCache(
                settings.jwt_jwks_url,
                http,
                min_refresh_interval=settings.jwks_min_refresh_seconds,
                max_age=settings.jwks_max_age_seconds,
            )
        app[TOKEN_VERIFIER] = TokenVerifier(
            settings.jwt_secret or None,
            jwks=jwks,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
        )
        yield


def _backends(clock: Callable[[], datetime]) -> Callable[[web.Application], AsyncIterator[None]]:
    async def backends(app: web.Application) -> AsyncIterator[None]:
        """One aioboto3 session and one client per AWS service for the app's whole life."""
        settings = app[SETTINGS]
        async with aws_clients(settings) as clients:
            store = ObjectStore(clients.s3, clients.s3_presign, settings.bucket)
            repository = ImageRepository(clients.dynamodb, settings.table)
            app[OBJECT_STORE] = store
            app[IMAGE_REPOSITORY] = repository
            app[IMAGE_SERVICE] = ImageService(
                store=store,
                repository=repository,
                cursors=CursorCodec(cursor_key(settings)),
                policy=UploadPolicy(
                    allowed_content_types=settings.allowed_content_types,
                    max_upload_bytes=settings.max_upload_bytes,
                    upload_url_expiry=settings.upload_url_expiry,
                    download_url_expiry=settings.download_url_expiry,
                    inspection=InspectionLimits(
                        max_pixels=settings.max_pixels,
                        max_frames=settings.max_frames,
                        max_animation_pixels=settings.max_animation_pixels,
                    ),
                    inspection_concurrency=settings.inspection_concurrency,
                ),
                upload_limiter=TokenBucketLimiter(
                    per_minute=settings.upload_rate_per_minute, burst=settings.upload_burst
                ),
                clock=clock,
            )
            yield

    return backends


def create_app(settings: Settings, *, clock: Callable[[], datetime] = utc_now) -> web.Application:
    app = web.Application(
        # The API never carries image bytes, so every body is small JSON.
        client_max_size=settings.max_json_body_bytes,
        middlewares=[error_envelope, authenticate, validation_middleware],
    )
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_token_verifier)
    app.cleanup_ctx.append(_backends(clock))
    app.on_response_prepare.append(_security_headers)
    setup_routes(app)
    setup_openapi(app, title="image_service", version=__version__, description=API_DESCRIPTION)
    with warnings.catch_warnings():
        # aiohttp-apispec looks its parser up under this string key; ours fails into the envelope.
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        app["_apispec_parser"] = RequestParser()
    return app


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
