"""The one error envelope, request ids, authentication, and request parsing errors."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NoReturn
from urllib.parse import unquote_to_bytes

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware
from marshmallow import Schema, ValidationError, fields
from webargs import core
from webargs.aiohttpparser import AIOHTTPParser

from image_service.domain.apikeys import KEY_PREFIX, require_scope, user_token_only
from image_service.domain.errors import (
    BackendTimeout,
    BackendUnavailable,
    InvalidRequest,
    ServiceError,
    Unauthenticated,
)
from image_service.logs import log_request
from image_service.storage.errors import stalled_backend
from image_service.web.encoding import envelope_text
from image_service.web.keys import (
    API_KEYS,
    DEADLINE,
    METRICS,
    PRINCIPAL,
    REQUEST_ID,
    TOKEN_VERIFIER,
)

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_ERROR_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Headers of an aiohttp HTTP error worth keeping on its JSON replacement.
_KEPT_HEADERS = (hdrs.ALLOW,)


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return web.json_response(body, status=status, headers=headers, dumps=envelope_text)


def _service_error_response(exc: ServiceError) -> web.Response:
    headers: dict[str, str] = {}
    if isinstance(exc, Unauthenticated):
        headers[hdrs.WWW_AUTHENTICATE] = "Bearer"
    if exc.retry_after is not None:
        headers[hdrs.RETRY_AFTER] = str(exc.retry_after)
    return error_response(exc.http_status, exc.code, exc.message, exc.details, headers)


def _http_error_response(exc: web.HTTPException) -> web.Response:
    headers = {str(name): exc.headers[name] for name in _KEPT_HEADERS if name in exc.headers}
    code = _HTTP_ERROR_CODES.get(exc.status, f"http_{exc.status}")
    return error_response(exc.status, code, exc.reason, headers=headers)


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: gives the request its id (the caller's X-Request-ID when it is safe to echo),
    then counts, times and logs it by its route template, never its raw path."""
    supplied = request.headers.get("X-Request-ID", "")
    request[REQUEST_ID] = supplied if _SAFE_REQUEST_ID.match(supplied) else uuid.uuid4().hex
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # redirects leave as exceptions
        status = exc.status
        raise
    finally:
        duration = time.perf_counter() - started
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        request.app[METRICS].observe_request(route, request.method, status, duration)
        principal = request.get(PRINCIPAL)
        log_request(
            request_id=request[REQUEST_ID],
            method=request.method,
            route=route,
            # A share link's path is its token: a bearer capability, never logged.
            path=route if route.startswith("/s/") else request.path,
            status=status,
            duration=duration,
            user=principal.user_id if principal is not None else None,
            remote=request.remote,
        )


@web.middleware
async def error_envelope(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as the JSON envelope; every answer carries the request's id."""
    request_id = request[REQUEST_ID]
    response: web.StreamResponse
    try:
        response = await handler(request)
    except ServiceError as exc:
        if isinstance(exc, BackendUnavailable | BackendTimeout):  # not /ready's own verdict
            request.app[METRICS].observe_backend_failure(
                str(exc.details.get("backend") or "unknown"), exc.code
            )
        if exc.http_status >= 500:
            log.warning(
                "%s %s -> %s (%s) [%s]",
                request.method,
                request.path,
                exc.code,
                getattr(exc, "reason", exc.message),
                request_id,
            )
        response = _service_error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            exc.headers["X-Request-ID"] = request_id
            raise
        response = _http_error_response(exc)
    except Exception:
        log.exception("unhandled error on %s %s [%s]", request.method, request.path, request_id)
        response = error_response(
            500, "internal_error", "An unexpected error occurred.", {"request_id": request_id}
        )
    response.headers["X-Request-ID"] = request_id
    return response


# What a browser page on another origin may send and read (tokens travel in a header, never in
# cookies, so no credentials mode is needed and `*` is safe to answer).
_CORS_METHODS = "GET, POST, PATCH, DELETE"
_CORS_REQUEST_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-Request-ID"
_CORS_EXPOSED_HEADERS = "X-Request-ID, Retry-After, Location"
_CORS_MAX_AGE_SECONDS = "600"


def cors(origins: tuple[str, ...]) -> Middleware:
    """Answers CORS preflights itself (before authentication: a browser sends no token there)
    and marks every answer, errors included, readable by the allowed origins."""
    any_origin = "*" in origins
    allowed = frozenset(origins)

    def allow(origin: str) -> dict[str, str]:
        return {
            hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: "*" if any_origin else origin,
            hdrs.VARY: hdrs.ORIGIN,
        }

    def readable(origin: str) -> dict[str, str]:
        return {**allow(origin), hdrs.ACCESS_CONTROL_EXPOSE_HEADERS: _CORS_EXPOSED_HEADERS}

    @web.middleware
    async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is None or not (any_origin or origin in allowed):
            return await handler(request)
        if (
            request.method == hdrs.METH_OPTIONS
            and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
        ):
            return web.Response(
                status=204,
                headers={
                    **allow(origin),
                    hdrs.ACCESS_CONTROL_ALLOW_METHODS: _CORS_METHODS,
                    hdrs.ACCESS_CONTROL_ALLOW_HEADERS: _CORS_REQUEST_HEADERS,
                    hdrs.ACCESS_CONTROL_MAX_AGE: _CORS_MAX_AGE_SECONDS,
                },
            )
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # a redirect (download?redirect=true)
            exc.headers.update(readable(origin))
            raise
        response.headers.update(readable(origin))
        return response

    return cors_middleware


def deadline(seconds: float) -> Middleware:
    """No request waits on a backend longer than ``seconds``: past it, the work is cancelled and
    the answer is a 503 naming the backend it was waiting on, with Retry-After. (Every write is
    conditional or idempotent, so work cut short is redone safely by the client's retry.)"""

    @web.middleware
    async def deadline_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            async with asyncio.timeout(seconds) as timeout:
                request[DEADLINE] = timeout
                return await handler(request)
        except TimeoutError:
            raise BackendTimeout(stalled_backend(), seconds) from None

    return deadline_middleware


# aiohttp-apispec's spec, Swagger UI page and its files; the browser page's files.
_PUBLIC_PREFIXES = ("/docs", "/static")


def is_public(request: web.Request) -> bool:
    route = request.match_info.route
    if getattr(route.handler, "is_public", False):
        return True
    resource = route.resource
    return resource is not None and resource.canonical.startswith(_PUBLIC_PREFIXES)


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every matched route requires a bearer token (a user's JWT, or an API key with the scope
    the route declares) unless its handler is marked public."""
    if request.match_info.http_exception is None and not is_public(request):
        authorization = request.headers.get(hdrs.AUTHORIZATION)
        if authorization is None and getattr(request.match_info.handler, "token_in_query", False):
            # A browser's EventSource cannot send a header. Logs hold paths, never queries.
            token = request.query.get("access_token")
            authorization = None if token is None else f"Bearer {token}"
        scheme, _, credential = (authorization or "").partition(" ")
        credential = credential.strip()
        if (
            scheme.lower() == "bearer"
            and credential.startswith(KEY_PREFIX)
            and API_KEYS in request.app
        ):
            principal = await request.app[API_KEYS].verify(credential)
            scope: str | None = getattr(request.match_info.handler, "required_scope", None)
            if scope is None:
                user_token_only(principal)
            else:
                require_scope(principal, scope)
        else:
            principal = await request.app[TOKEN_VERIFIER].verify(authorization)
        request[PRINCIPAL] = principal
    return await handler(request)


def scoped(scope: str, handler: Handler) -> Handler:
    """``handler`` with the scope an API key needs to call it (web/routes.py declares each)."""
    handler.required_scope = scope  # type: ignore[attr-defined]  # read by `authenticate`
    documented = getattr(handler, "__apispec__", None)
    if documented is not None:  # the docs page says it too
        documented["x-api-key-scope"] = scope
    return handler


def public(handler: Handler) -> Handler:
    handler.is_public = True  # type: ignore[attr-defined]  # a marker read by `authenticate`
    return handler


def token_in_query(handler: Handler) -> Handler:
    """The route also takes its bearer token as ``?access_token=`` (event streams)."""
    handler.token_in_query = True  # type: ignore[attr-defined]  # read by `authenticate`
    return handler


class RequestParser(AIOHTTPParser):
    """webargs' aiohttp parser, failing with domain errors so they reach the one envelope."""

    async def load_json(self, req: web.Request, schema: Schema) -> Any:
        # Any body is read as JSON, whatever its declared type: `curl -d` sends a form type.
        if not req.body_exists:
            return core.missing
        raw = await req.read()
        if not raw.strip():
            return core.missing
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise InvalidRequest("The body is not valid JSON.", code="invalid_json") from None

    def load_querystring(self, req: web.Request, schema: Schema) -> Any:
        _refuse_undecodable_parameters(req.rel_url.raw_query_string)
        # `?limit=5&limit=500` is ambiguous, and layers that read the first or the last value
        # would disagree: a parameter that takes one value must appear once.
        repeated = sorted(
            name
            for name in set(req.query.keys())
            if len(req.query.getall(name)) > 1
            and not isinstance(schema.fields.get(name), fields.List)
        )
        if repeated:
            raise InvalidRequest(
                "The request is invalid.",
                code="validation_error",
                details={
                    "location": "querystring",
                    "fields": {name: ["Give this parameter once."] for name in repeated},
                },
            )
        return super().load_querystring(req, schema)

    def handle_error(
        self,
        error: ValidationError,
        req: web.Request,
        schema: Schema,
        *,
        error_status_code: int | None,
        error_headers: Mapping[str, str] | None,
    ) -> NoReturn:
        details: dict[str, Any] = {"fields": error.messages}
        # webargs nests messages under the location ("json", "querystring"): lift it out.
        if isinstance(error.messages, dict) and len(error.messages) == 1:
            location, fields = next(iter(error.messages.items()))
            details = {"location": location, "fields": fields}
        raise InvalidRequest("The request is invalid.", code="validation_error", details=details)


def _refuse_undecodable_parameters(raw_query: str) -> None:
    """A query parameter whose percent-encoded bytes are not UTF-8 (a lone surrogate's bytes
    among them) is refused by name; the URL parser would otherwise hand it on with each bad byte
    silently turned into U+FFFD."""
    undecodable: dict[str, list[str]] = {}
    for pair in raw_query.split("&"):
        name, _, value = pair.partition("=")
        for part in (name, value):
            try:
                unquote_to_bytes(part.replace("+", " ")).decode("utf-8")
            except UnicodeDecodeError:
                shown = unquote_to_bytes(name).decode("utf-8", "replace")
                undecodable[shown] = ["Not UTF-8: send valid Unicode, percent-encoded."]
                break
    if undecodable:
        raise InvalidRequest(
            "The request is invalid.",
            code="validation_error",
            details={"location": "querystring", "fields": undecodable},
        )
