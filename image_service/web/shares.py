"""Share links (``domain/shares.py``): ``/shares`` for their owner, and ``/s/<token>`` for
anyone holding one, as JSON or, for a browser, a small gallery page."""

from __future__ import annotations

from contextlib import aclosing
from dataclasses import replace
from datetime import timedelta
from typing import Any

from aiohttp import hdrs, web
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from image_service.domain.errors import InvalidRequest, RenditionUrlRefused, ServiceError
from image_service.domain.models import MAX_TAG_LENGTH, ImageRecord, normalize_tags
from image_service.domain.shares import (
    DEFAULT_TTL,
    MAX_SHARED_IMAGES,
    MAX_TTL,
    Share,
    ShareTarget,
)
from image_service.web.encoding import json_text
from image_service.web.fields import (
    IMAGE_ID,
    StrictSchema,
    Text,
    UtcTimestamp,
    page_cursor_field,
    page_limit_field,
)
from image_service.web.handlers import (
    NO_STORE,
    owner_param,
    rendition_response,
    spelt_as_signed,
)
from image_service.web.keys import (
    ALBUMS,
    METRICS,
    OBJECT_STORE,
    PRINCIPAL,
    RENDITIONS,
    SHARE_URLS,
    SHARES,
)
from image_service.web.middlewares import public
from image_service.web.openapi import BEARER, docs, json_schema, querystring_schema, response_schema
from image_service.web.page import share_page
from image_service.web.schemas import OwnerQuerySchema

_docs = {"tags": ["shares"], "security": [{BEARER: []}]}
_public_docs = {"tags": ["shares"], "security": []}
PASSWORD_HEADER = "Share-Password"  # noqa: S105 (a header's name, not a password)
SHARE_PAGE_SIZE = 50


class ShareCreateSchema(StrictSchema):
    image_ids = fields.List(
        fields.String(validate=IMAGE_ID),
        validate=validate.Length(min=1, max=MAX_SHARED_IMAGES),
        metadata={"description": f"1 to {MAX_SHARED_IMAGES} of your images (or album_id, or tag)."},
    )
    album_id = fields.String(validate=validate.Regexp(r"^[0-9a-f]{32}$"))
    tag = Text(validate=validate.Length(min=1, max=MAX_TAG_LENGTH))
    expires_at = fields.AwareDateTime(metadata={"description": "When the link ends."})
    ttl = fields.Integer(
        validate=validate.Range(min=60, max=int(MAX_TTL.total_seconds())),
        metadata={"description": f"Or its life in seconds ({DEFAULT_TTL.days} days if neither)."},
    )
    password = Text(
        validate=validate.Length(min=8, max=128),
        load_only=True,
        metadata={"description": "Asked of every viewer (header Share-Password)."},
    )
    allow_download = fields.Boolean(
        load_default=False,
        metadata={"description": "Serve the originals too; renditions only if false."},
    )
    max_views = fields.Integer(
        validate=validate.Range(min=1, max=1_000_000),
        metadata={"description": "The link ends after this many views, on every replica."},
    )
    presets = fields.List(
        fields.String(validate=validate.Length(min=1, max=64)),
        validate=validate.Length(min=1, max=20),
        metadata={
            "description": "The rendition presets it serves (all of the service's if absent)."
        },
    )

    @validates_schema
    def _one_target(self, data: dict[str, Any], **_: Any) -> None:
        if sum(name in data for name in ("image_ids", "album_id", "tag")) != 1:
            raise ValidationError("Give exactly one of image_ids, album_id and tag.")
        if "expires_at" in data and "ttl" in data:
            raise ValidationError("Give expires_at or ttl, not both.")


class ShareTargetSchema(Schema):
    image_ids = fields.List(fields.String())
    album_id = fields.String(allow_none=True)
    tag = fields.String(allow_none=True)


class ShareSchema(Schema):
    share_id = fields.String(required=True)
    target = fields.Nested(ShareTargetSchema, required=True)
    created_at = UtcTimestamp(required=True)
    expires_at = UtcTimestamp(required=True)
    allow_download = fields.Boolean(required=True)
    presets = fields.List(fields.String(), required=True)
    max_views = fields.Integer(allow_none=True)
    views = fields.Integer(
        required=True,
        metadata={"description": "Views so far; without max_views, up to 10 s behind."},
    )
    has_password = fields.Boolean(required=True)


class ShareCreatedSchema(ShareSchema):
    url = fields.String(
        required=True, metadata={"description": "The link: shown once, never again."}
    )


class ShareListSchema(Schema):
    items = fields.List(fields.Nested(ShareSchema), required=True)


class SharedQuerySchema(StrictSchema):
    limit = page_limit_field(SHARE_PAGE_SIZE)
    cursor = page_cursor_field()


class SharedImageSchema(Schema):
    image_id = fields.String(required=True)
    width = fields.Integer(allow_none=True)
    height = fields.Integer(allow_none=True)
    placeholder = fields.String(allow_none=True)
    thumbhash = fields.String(allow_none=True)
    renditions = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        required=True,
        metadata={"description": "A signed URL per preset the link serves."},
    )
    download = fields.String(
        allow_none=True, metadata={"description": "The original, if the link allows it."}
    )


class SharedSchema(Schema):
    expires_at = UtcTimestamp(required=True)
    allow_download = fields.Boolean(required=True)
    images = fields.List(fields.Nested(SharedImageSchema), required=True)
    next_cursor = fields.String(allow_none=True)


_one = ShareSchema()
_created = ShareCreatedSchema()
_listed = ShareListSchema()
_shared = SharedSchema()


def _view(share: Share) -> dict[str, Any]:
    return {
        "share_id": share.share_id,
        "target": {
            "image_ids": list(share.target.image_ids),
            "album_id": share.target.album_id,
            "tag": share.target.tag,
        },
        "created_at": share.created_at,
        "expires_at": share.expires_at,
        "allow_download": share.allow_download,
        "presets": list(share.presets),
        "max_views": share.max_views,
        "views": share.views,
        "has_password": share.has_password,
    }


@docs(
    summary="Make a share link to images, an album or a tag",
    description="The link is in this answer only. Needs shares:write with an API key.",
    **_docs,
)
@querystring_schema(OwnerQuerySchema)
@json_schema(ShareCreateSchema)
@response_schema(ShareCreatedSchema, 201)
async def create_share(request: web.Request) -> web.Response:
    body = request["json"]
    principal, owner = request[PRINCIPAL], owner_param(request)
    target = ShareTarget(
        image_ids=tuple(dict.fromkeys(body.get("image_ids", ()))),
        album_id=body.get("album_id"),
        tag=normalize_tags([body["tag"]])[0] if "tag" in body else None,
    )
    if target.album_id is not None:
        await request.app[ALBUMS].page(principal, target.album_id, owner, limit=1, cursor=None)
    share, token = await request.app[SHARES].create(
        principal,
        owner,
        target=target,
        expires_at=body.get("expires_at"),
        ttl=timedelta(seconds=body["ttl"]) if "ttl" in body else None,
        password=body.get("password"),
        allow_download=body["allow_download"],
        max_views=body.get("max_views"),
        presets=body.get("presets"),
    )
    url = f"{request.url.origin()}/s/{token}"
    answer = _created.dump({**_view(share), "url": url})
    return web.json_response(answer, status=201, headers=NO_STORE, dumps=json_text)


@docs(summary="Your share links and their views, newest first", **_docs)
@querystring_schema(OwnerQuerySchema)
@response_schema(ShareListSchema, 200)
async def list_shares(request: web.Request) -> web.Response:
    shares = await request.app[SHARES].of_owner(request[PRINCIPAL], owner_param(request))
    body = _listed.dump({"items": [_view(share) for share in shares]})
    return web.json_response(body, headers=NO_STORE, dumps=json_text)


@docs(summary="Revoke a share link: it answers 410 at once, everywhere", **_docs)
@querystring_schema(OwnerQuerySchema)
@response_schema(None, 204)
async def revoke_share(request: web.Request) -> web.Response:
    await request.app[SHARES].revoke(
        request[PRINCIPAL], request.match_info["share_id"], owner_param(request)
    )
    return web.Response(status=204)


def _wants_page(request: web.Request) -> bool:
    accept = request.headers.get(hdrs.ACCEPT, "")
    return "text/html" in accept and "application/json" not in accept


def _refused(request: web.Request, error: ServiceError) -> None:
    request.app[METRICS].share_refusals.labels(error.code).inc()


@public
@docs(
    summary="What a share link shows (no token: the link is the authority)",
    description="JSON: the link's ready images, each with signed rendition URLs (and the "
    "original's, if it allows downloads). A browser (Accept: text/html) gets a gallery page. "
    "Expired, revoked or used up: 410; a wrong or missing password (header Share-Password): "
    "401, guesses limited per link and per address (429); unknown: 404. Each call is a view.",
    **_public_docs,
)
@querystring_schema(SharedQuerySchema)
@response_schema(SharedSchema, 200)
async def open_share(request: web.Request) -> web.StreamResponse:
    shares = request.app[SHARES]
    token = request.match_info["token"]
    if _wants_page(request):
        try:
            await shares.exists(token)  # the page's status: 404 or 410 now; the rest in it
        except ServiceError as error:
            _refused(request, error)
            return share_page(request, status=error.http_status)
        return share_page(request)
    try:
        query = request["querystring"]
        page = await shares.open(
            token,
            password=request.headers.get(PASSWORD_HEADER),
            client=request.remote or "",
            limit=query["limit"],
            cursor=query["cursor"],
        )
    except ServiceError as error:
        _refused(request, error)
        raise
    request.app[METRICS].share_views.inc()
    urls = request.app[SHARE_URLS]
    presets = request.app[RENDITIONS].policy.presets
    origin = str(request.url.origin())

    def image(record: ImageRecord) -> dict[str, Any]:
        share_id = page.share.share_id
        return {
            "image_id": record.image_id,
            "width": record.width,
            "height": record.height,
            "placeholder": record.placeholder,
            "thumbhash": record.thumbhash,
            "renditions": {
                name: origin + urls.rendition(share_id, record, presets[name])
                for name in page.share.presets
                if name in presets
            },
            "download": (
                origin + urls.original(share_id, record.image_id)
                if page.share.allow_download
                else None
            ),
        }

    body = _shared.dump(
        {
            "expires_at": page.share.expires_at,
            "allow_download": page.share.allow_download,
            "images": [image(record) for record in page.images],
            "next_cursor": page.next_cursor,
        }
    )
    return web.json_response(body, headers=NO_STORE, dumps=json_text)


@public
@docs(summary="A rendition through a share link (its signed URL)", **_public_docs)
@response_schema(None, 200, description="The rendition's bytes.")
async def deliver_shared_rendition(request: web.Request) -> web.StreamResponse:
    match = request.match_info
    segments = (
        match["share"],
        match["image_id"],
        match["edition"],
        match["spec"],
        match["expires"],
        match["signature"],
    )
    spelt_as_signed(request, "/s/r", *segments)
    share_id, spec = request.app[SHARE_URLS].verify_rendition(*segments)
    share, record = await request.app[SHARES].for_delivery(share_id, match["image_id"])
    presets = request.app[RENDITIONS].policy.presets
    shared = [presets[name].for_image(record) for name in share.presets if name in presets]
    if replace(spec, gravity=None) not in [replace(s, gravity=None) for s in shared]:
        raise RenditionUrlRefused("invalid_signature")
    delivery = await request.app[RENDITIONS].deliver(
        share.owner,
        record.image_id,
        spec,
        match["edition"],
        accept=request.headers.get("Accept", ""),
        if_none_match=request.headers.get("If-None-Match", ""),
    )
    # Asked again each time (a 304 when unchanged): a revoked link stops at once.
    return rendition_response(delivery, cache_control="private, no-cache")


@public
@docs(summary="An original through a share link that allows downloads", **_public_docs)
@response_schema(None, 200, description="The original's bytes.")
async def deliver_shared_original(request: web.Request) -> web.StreamResponse:
    match = request.match_info
    segments = (match["share"], match["image_id"], match["expires"], match["signature"])
    spelt_as_signed(request, "/s/o", *segments)
    share_id = request.app[SHARE_URLS].verify_original(*segments)
    share, record = await request.app[SHARES].for_delivery(share_id, match["image_id"])
    if not share.allow_download:
        raise InvalidRequest("This link serves renditions only.", code="download_not_allowed")
    response = web.StreamResponse(
        headers={
            "Content-Type": record.content_type,
            "Content-Disposition": f'attachment; filename="{record.image_id}"',
            "Cache-Control": "private, no-store",
        }
    )
    if record.size is not None:
        response.content_length = record.size
    await response.prepare(request)
    async with aclosing(request.app[OBJECT_STORE].read(record.s3_key)) as chunks:
        async for chunk in chunks:
            await response.write(chunk)
    await response.write_eof()
    return response


def setup_share_routes(app: web.Application, scoped: Any) -> None:
    router = app.router
    router.add_post("/shares", scoped("shares:write", create_share))
    router.add_get("/shares", scoped("shares:write", list_shares), allow_head=False)
    router.add_delete("/shares/{share_id:[0-9a-f]{16}}", scoped("shares:write", revoke_share))
    router.add_get("/s/{token}", open_share, allow_head=False)
    router.add_get(
        "/s/r/{share}/{image_id}/{edition}/{spec}/{expires}/{signature}",
        deliver_shared_rendition,
        allow_head=False,
    )
    router.add_get(
        "/s/o/{share}/{image_id}/{expires}/{signature}", deliver_shared_original, allow_head=False
    )
