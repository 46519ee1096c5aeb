"""Thin handlers: validated input in, one call into the domain, a schema dump out."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web
from aiohttp_sse import sse_response
from marshmallow import Schema

from image_service.domain.errors import RenditionUrlRefused
from image_service.domain.health import check_backends
from image_service.domain.imports import ImportRequest
from image_service.domain.models import Keep, ListFilter
from image_service.domain.owners import owner_for
from image_service.domain.renditions import Delivery, validated_spec
from image_service.domain.uploads import UploadRequest
from image_service.domain.views import image_view, page_view
from image_service.metrics import CONTENT_TYPE
from image_service.web.encoding import json_text
from image_service.web.keys import (
    COMPLETION,
    DEADLINE,
    IMAGE_REPOSITORY,
    IMPORTS,
    JOB_QUEUE,
    LIBRARY,
    METRICS,
    OBJECT_STORE,
    PRINCIPAL,
    RENDITIONS,
    SETTINGS,
    TRASH,
    UPLOADS,
    WATCHER,
)
from image_service.web.middlewares import public, token_in_query
from image_service.web.openapi import (
    BEARER,
    docs,
    idempotency_key_header,
    json_schema,
    querystring_schema,
    response_schema,
)
from image_service.web.schemas import (
    CallbackSecretSchema,
    DeleteQuerySchema,
    DigestCheckResponseSchema,
    DigestCheckSchema,
    DownloadQuerySchema,
    DownloadResponseSchema,
    EventsQuerySchema,
    HealthSchema,
    ImagePageSchema,
    ImagePatchSchema,
    ImageQuerySchema,
    ImageSchema,
    ImportRequestSchema,
    ListQuerySchema,
    OwnerQuerySchema,
    PartsResponseSchema,
    PurgedSchema,
    RenderQuerySchema,
    RenderResponseSchema,
    UploadRequestSchema,
    UploadResponseSchema,
)

READINESS_TIMEOUT_SECONDS = 3.0
# Responses that carry a URL granting access must never sit in a shared or browser cache.
NO_STORE = {"Cache-Control": "no-store"}

_upload = UploadResponseSchema()
_download = DownloadResponseSchema()
_render = RenderResponseSchema()
_parts = PartsResponseSchema()
_digests = DigestCheckResponseSchema()
_callback_secret = CallbackSecretSchema()
_secured = {"tags": ["images"], "security": [{BEARER: []}]}


def _dump(
    schema: Schema, obj: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(schema.dump(obj), status=status, headers=headers, dumps=json_text)


def _json(body: Any) -> web.Response:
    return web.json_response(body, dumps=json_text)


def _owns(request: web.Request, owner: str | None) -> bool:
    """Whether the caller is the owner (an admin acting for a user sees no GPS position)."""
    return owner is None or owner == request[PRINCIPAL].user_id


def owner_param(request: web.Request) -> str | None:
    """The ``user_id`` a request acts for (an admin's choice), from its query string."""
    user_id: str | None = request["querystring"].get("user_id")
    return user_id


@docs(
    summary="Request a presigned upload URL",
    parameters=[
        idempotency_key_header("Retries with the same key and body return the same image and URL.")
    ],
    **_secured,
)
@json_schema(UploadRequestSchema)
@response_schema(
    UploadResponseSchema,
    201,
    description="Upload the bytes to upload_url, or (MULTIPART) each part to its URL.",
)
@response_schema(
    ImageSchema,
    200,
    description='if_exists "return": the caller already has an image of these bytes; no URL.',
)
async def create_upload(request: web.Request) -> web.Response:
    body = request["json"]
    record, upload = await request.app[UPLOADS].create_upload(
        request[PRINCIPAL],
        UploadRequest(**body),
        idempotency_key=request.headers.get("Idempotency-Key"),
    )
    if upload is None:
        return _json(image_view(record, gps=_owns(request, record.user_id)))
    payload: dict[str, Any] = {
        "image_id": record.image_id,
        "method": upload.method,
        "headers": upload.headers,
        "fields": upload.fields,
        "expires_at": upload.expires_at,
    }
    if upload.method == "MULTIPART":
        payload.update(upload_id=upload.upload_id, part_size=upload.part_size, parts=upload.parts)
    else:
        payload["upload_url"] = upload.url
    return _dump(_upload, payload, status=201, headers=NO_STORE)


@docs(
    summary="Import an image from a URL",
    description="Answers 202 with the image, fetching: a worker fetches the URL (never the "
    "API), then verifies what arrived as an upload (magic bytes, a full decode, pixel and size "
    "limits, the quota, scanning). The image then goes the usual way (processing, ready), or "
    "ends rejected with its reason: fetch_refused (a private address, too many redirects), "
    "fetch_failed (the server's error, a timeout), too_large, not_an_image, or completion's "
    "own. A malformed or plainly private URL is 422 at once. GET /images/{id}?wait=20 waits "
    "for the outcome. With an Idempotency-Key, a retry answers the same image.",
    parameters=[idempotency_key_header("Retries with the same key and URL answer the same image.")],
    **_secured,
)
@json_schema(ImportRequestSchema)
@response_schema(ImageSchema, 202, description="The image, fetching.")
async def import_image(request: web.Request) -> web.Response:
    body = request["json"]
    record = await request.app[IMPORTS].start(
        request[PRINCIPAL],
        ImportRequest(**body),
        idempotency_key=request.headers.get("Idempotency-Key"),
    )
    return web.json_response(
        image_view(record, gps=_owns(request, record.user_id)),
        status=202,
        dumps=json_text,
        headers={"Location": f"/images/{record.image_id}"},
    )


@docs(
    summary="Resume a multipart upload: the parts S3 holds, fresh URLs for the rest",
    description="PUT every part listed under parts (in any order, several at once), then "
    "POST /images/{image_id}/complete. Call again whenever URLs expire or after a crash.",
    **_secured,
)
@querystring_schema(OwnerQuerySchema)
@response_schema(PartsResponseSchema, 200)
async def upload_parts(request: web.Request) -> web.Response:
    image_id = request.match_info["image_id"]
    progress = await request.app[UPLOADS].parts(request[PRINCIPAL], image_id, owner_param(request))
    payload = {
        "image_id": image_id,
        "upload_id": progress.upload_id,
        "size": progress.size,
        "part_size": progress.part_size,
        "uploaded": progress.uploaded,
        "parts": progress.missing,
        "expires_at": progress.expires_at,
    }
    return _dump(_parts, payload, headers=NO_STORE)


@docs(
    summary="Which of these SHA-256 digests the caller already has images of (de-duplication)",
    description="Up to 500 digests (base64 or hex). Answers each with the id of an image of "
    "the caller's with those bytes (processing or ready), or null.",
    **_secured,
)
@json_schema(DigestCheckSchema)
@response_schema(DigestCheckResponseSchema, 200)
async def check_digests(request: web.Request) -> web.Response:
    body = request["json"]
    results = await request.app[UPLOADS].check_digests(
        request[PRINCIPAL], body.get("user_id"), body["checksums_sha256"]
    )
    return _dump(_digests, {"results": results})


@docs(summary="Verify an uploaded image and mark it ready", **_secured)
@querystring_schema(OwnerQuerySchema)
@response_schema(ImageSchema, 200)
async def complete_upload(request: web.Request) -> web.Response:
    record = await request.app[COMPLETION].complete(
        request[PRINCIPAL], request.match_info["image_id"], owner_param(request)
    )
    return _json(image_view(record, gps=_owns(request, record.user_id)))


@docs(
    summary="Get an image's metadata; with wait=ready, once it is processed",
    description="With wait=ready the request is held until the image leaves pending and "
    "processing, or `timeout` seconds pass, and then answers the image as it is: no polling. "
    "Each process holds a bounded number at once (IMAGE_SERVICE_MAX_HELD_WAITS; beyond it, "
    "503 too_many_waits with Retry-After).",
    **_secured,
)
@querystring_schema(ImageQuerySchema)
@response_schema(ImageSchema, 200)
async def get_image(request: web.Request) -> web.Response:
    query = request["querystring"]
    wait_seconds = float(query["timeout"]) if query.get("wait") else None
    if wait_seconds:  # held on purpose: the request's deadline moves past the wait
        deadline = request[DEADLINE]
        deadline.reschedule(
            asyncio.get_running_loop().time()
            + wait_seconds
            + request.app[SETTINGS].request_timeout_seconds
        )
    record = await request.app[LIBRARY].get(
        request[PRINCIPAL],
        request.match_info["image_id"],
        owner_param(request),
        wait_seconds=wait_seconds,
    )
    return _json(image_view(record, gps=_owns(request, record.user_id)))


@docs(
    summary="A stream of the caller's image events (server-sent events)",
    description="Each event is named image.processing, image.ready, image.rejected, "
    "image.quarantined, image.trashed, image.restored or image.deleted, and its data is the "
    "image as the change left it, as GET /images/{id} shows it. Every change made through any "
    "replica is heard within 3 seconds (the event feed, docs/reliability.md). Counted against "
    "IMAGE_SERVICE_MAX_HELD_WAITS (503) and IMAGE_SERVICE_MAX_HELD_WAITS_PER_USER (429). The "
    "stream ends when the token that opened "
    'it expires, with a last event named end ({"reason": "token_expired"}): reconnect '
    "with a fresh token. Browsers: EventSource cannot send a header, so pass the token as "
    "?access_token=.",
    **_secured,
)
@token_in_query
@querystring_schema(EventsQuerySchema)
@response_schema(None, 200, description="text/event-stream")
async def image_events(request: web.Request) -> web.StreamResponse:
    principal = request[PRINCIPAL]
    owner = owner_for(principal, owner_param(request))
    request[DEADLINE].reschedule(None)  # a stream lasts as long as its reader, and its token
    async with (
        request.app[WATCHER].stream(owner, holder=principal.user_id) as changes,
        sse_response(request, headers=NO_STORE) as stream,
    ):
        # Ends when the reader goes (the stream's pings fail), the process stops (None), or
        # the token that opened it expires: a stream is never worth more than its credential.
        closed = asyncio.ensure_future(stream.wait())
        lifetime = None if principal.expires_at is None else principal.expires_at - time.time()
        expired = asyncio.ensure_future(asyncio.sleep(max(0.0, lifetime or 0.0)))
        if lifetime is None:
            expired.cancel()
        try:
            while True:
                change = asyncio.ensure_future(changes.get())
                await asyncio.wait({change, closed, expired}, return_when=asyncio.FIRST_COMPLETED)
                if expired.done() and not expired.cancelled():
                    change.cancel()
                    await stream.send(json_text({"reason": "token_expired"}), event="end")
                    break
                next_change = change.result() if change.done() else None
                if next_change is None:
                    change.cancel()
                    break
                event_type, record = next_change
                await stream.send(
                    json_text(image_view(record, gps=_owns(request, owner))), event=event_type
                )
        finally:
            closed.cancel()
            expired.cancel()
    return stream


@docs(summary="Change an image's tags and/or description", **_secured)
@querystring_schema(OwnerQuerySchema)
@json_schema(ImagePatchSchema)
@response_schema(ImageSchema, 200)
async def update_image(request: web.Request) -> web.Response:
    body = request["json"]
    record = await request.app[LIBRARY].update(
        request[PRINCIPAL],
        request.match_info["image_id"],
        owner_param(request),
        tags=body.get("tags"),
        description=body.get("description"),
        focal=body.get("focal", Keep.KEEP),  # absent: left as it is; null: cleared
    )
    return _json(image_view(record, gps=_owns(request, record.user_id)))


@docs(summary="List images, newest first", **_secured)
@querystring_schema(ListQuerySchema)
@response_schema(ImagePageSchema, 200)
async def list_images(request: web.Request) -> web.Response:
    query = request["querystring"]
    filters = ListFilter(
        tags=tuple(query["tag"]),
        start=query.get("start_date"),
        end=query.get("end_date"),
        status=query.get("status"),
        taken_from=query.get("taken_from"),
        taken_to=query.get("taken_to"),
        by_taken=query["sort"] == "taken_at",
    )
    page = await request.app[LIBRARY].list(
        request[PRINCIPAL],
        query.get("user_id"),
        filters,
        limit=query["limit"],
        cursor=query.get("cursor"),
    )
    return _json(page_view(page, gps=_owns(request, query.get("user_id"))))


@docs(summary="Get a short-lived download URL", **_secured)
@querystring_schema(DownloadQuerySchema)
@response_schema(DownloadResponseSchema, 200)
async def download_image(request: web.Request) -> web.Response:
    query = request["querystring"]
    download = await request.app[LIBRARY].download(
        request[PRINCIPAL],
        request.match_info["image_id"],
        owner_param(request),
        variant=query.get("variant"),
        variant_format=query["format"],
    )
    if request["querystring"]["redirect"]:
        raise web.HTTPFound(download.url, headers=NO_STORE)
    return _dump(_download, download, headers=NO_STORE)


@docs(
    summary="Get a signed URL of a rendition: any allowed size and format, made on first use",
    description=(
        "Answers a signed delivery URL (no token needed until it expires). The first request "
        "for a rendition renders and stores it; later ones are served from storage. Sizes and "
        "qualities come from allowlists (anything else: 422 naming them); each user has a rate "
        "of new renditions (429) and each process a bound on renders at once (503, "
        "Retry-After)."
    ),
    **_secured,
)
@querystring_schema(RenderQuerySchema)
@response_schema(RenderResponseSchema, 200)
async def render_url(request: web.Request) -> web.Response:
    query = request["querystring"]
    renditions = request.app[RENDITIONS]
    spec = validated_spec(
        renditions.policy,
        width=query.get("w"),
        height=query.get("h"),
        fit=query["fit"],
        fmt=query["format"],
        quality=query.get("q"),
        preset=query.get("preset"),
        gravity=query.get("gravity"),
    )
    record = await request.app[LIBRARY].get(
        request[PRINCIPAL], request.match_info["image_id"], owner_param(request)
    )
    signed = renditions.sign_for(record, spec)
    url = str(request.url.origin()) + signed.path
    if query["redirect"]:
        raise web.HTTPFound(url, headers=NO_STORE)
    return _dump(_render, {"url": url, "expires_at": signed.expires_at}, headers=NO_STORE)


@public
@docs(
    summary="Deliver a rendition (the signed URL from /images/{image_id}/render)",
    description="No token: the URL's signature is the authority. A changed or expired URL: 403.",
    tags=["images"],
    security=[],
)
@response_schema(
    None,
    200,
    description="The rendition's bytes (image/avif, image/webp or image/jpeg), with an ETag "
    "and Cache-Control for as long as the URL lives; 304 when If-None-Match matches.",
)
async def deliver_rendition(request: web.Request) -> web.StreamResponse:
    match = request.match_info
    renditions = request.app[RENDITIONS]
    made_from = match["edition"]
    segments = (match["owner"], match["image_id"], match["spec"], match["expires"])
    spelt_as_signed(
        request,
        "/r",
        match["owner"],
        match["image_id"],
        made_from,
        *segments[2:],
        match["signature"],
    )
    owner, spec, expires = renditions.signer.verify(
        *segments, match["signature"], edition=made_from
    )
    delivery = await renditions.deliver(
        owner,
        match["image_id"],
        spec,
        made_from,
        accept=request.headers.get("Accept", ""),
        if_none_match=request.headers.get("If-None-Match", ""),
    )
    # Cached no longer than the URL lives, nor than a trash or a delete may take to reach the
    # caches (a CDN told to purge forgets at once): a cache asks again after max_age. What a
    # URL names never changes (its edition is in it), so it is immutable while it lives.
    lifetime = max(0, min(expires - int(time.time()), renditions.policy.max_age))
    return rendition_response(delivery, cache_control=f"public, max-age={lifetime}, immutable")


def spelt_as_signed(request: web.Request, *segments: str) -> None:
    """Refuses a signed URL spelt otherwise than it was signed (percent-encoded characters, a
    query string): another spelling is another URL to a CDN's cache, and only the service's
    own is served."""
    if request.raw_path != "/".join(segments):
        raise RenditionUrlRefused("invalid_signature")


def rendition_response(delivery: Delivery, *, cache_control: str) -> web.Response:
    """A delivered rendition's answer: its bytes, or 304 when the caller has them."""
    headers = {"Cache-Control": cache_control, "ETag": delivery.etag}
    if delivery.negotiated:
        headers["Vary"] = "Accept"
    if delivery.data is None:
        return web.Response(status=304, headers=headers)
    return web.Response(body=delivery.data, content_type=delivery.content_type, headers=headers)


@docs(
    summary="Delete an image: into the trash, or for good",
    description="An image with bytes (ready, processing, quarantined) goes to the trash for "
    "IMAGE_SERVICE_TRASH_DAYS (30): not served, listed only with status=trashed, still "
    "counted in the quota, restorable (POST /images/{image_id}/restore) until the sweeper "
    "purges it. permanent=true (or a trash of 0 days) deletes at once, objects and record.",
    **_secured,
)
@querystring_schema(DeleteQuerySchema)
@response_schema(None, 204, description="In the trash, or deleted.")
async def delete_image(request: web.Request) -> web.Response:
    principal = request[PRINCIPAL]
    owner = owner_for(principal, owner_param(request))
    await request.app[TRASH].delete(
        principal,
        request.match_info["image_id"],
        owner,
        permanent=request["querystring"]["permanent"],
    )
    request.app[RENDITIONS].forget(owner, request.match_info["image_id"])
    return web.Response(status=204)


@docs(summary="Restore an image from the trash, as it was", **_secured)
@querystring_schema(OwnerQuerySchema)
@response_schema(ImageSchema, 200)
async def restore_image(request: web.Request) -> web.Response:
    record = await request.app[TRASH].restore(
        request[PRINCIPAL], request.match_info["image_id"], owner_param(request)
    )
    return _json(image_view(record, gps=_owns(request, record.user_id)))


@docs(summary="Empty the trash: every trashed image deleted for good", **_secured)
@querystring_schema(OwnerQuerySchema)
@response_schema(PurgedSchema, 200)
async def empty_trash(request: web.Request) -> web.Response:
    purged = await request.app[TRASH].empty_trash(request[PRINCIPAL], owner_param(request))
    return _json({"purged": purged})


@docs(
    summary="The key that signs your callback_url deliveries",
    description="Each owner's callbacks are signed with a key of their own (derived by the "
    "service; the same on every replica, until the operator rotates the callback master key). "
    "Verify deliveries to your callback_url with it.",
    tags=["webhooks"],
    security=[{BEARER: []}],
)
@querystring_schema(OwnerQuerySchema)
@response_schema(CallbackSecretSchema, 200)
async def callback_secret(request: web.Request) -> web.Response:
    secret = request.app[LIBRARY].callback_secret(request[PRINCIPAL], owner_param(request))
    return _dump(_callback_secret, {"secret": secret}, headers=NO_STORE)


@public
@docs(summary="Liveness: the process is serving", tags=["health"], security=[])
@response_schema(HealthSchema, 200)
async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@public
@docs(summary="Readiness: S3, DynamoDB and SQS answer", tags=["health"], security=[])
@response_schema(HealthSchema, 200)
async def ready(request: web.Request) -> web.Response:
    checks = await check_backends(
        {
            "s3": request.app[OBJECT_STORE].ping,
            "dynamodb": request.app[IMAGE_REPOSITORY].ping,
            "sqs": request.app[JOB_QUEUE].ping,
        },
        # Within the request's own deadline, so that the answer names what failed.
        limit_seconds=min(
            READINESS_TIMEOUT_SECONDS, request.app[SETTINGS].request_timeout_seconds / 2
        ),
    )
    return web.json_response({"status": "ok", "checks": checks})


@public
@docs(summary="Prometheus metrics", tags=["health"], security=[])
@response_schema(None, 200, description="Prometheus text exposition format.")
async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE})
