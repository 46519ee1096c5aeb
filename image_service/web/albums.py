"""``/albums``: the caller's albums (``domain/albums.py``), their pages of images, and adding
and removing up to 100 images in one call, with a result for each."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from image_service.domain.albums import (
    MAX_IMAGES_PER_CALL,
    MAX_NAME_LENGTH,
    Album,
    AlbumPage,
)
from image_service.domain.models import MAX_DESCRIPTION_LENGTH
from image_service.domain.views import image_view
from image_service.web.encoding import json_text
from image_service.web.fields import (
    DEFAULT_PAGE_SIZE,
    IMAGE_ID,
    StrictSchema,
    Text,
    UtcTimestamp,
    page_cursor_field,
    page_limit_field,
)
from image_service.web.handlers import owner_param
from image_service.web.keys import ALBUMS, PRINCIPAL
from image_service.web.openapi import BEARER, docs, json_schema, querystring_schema, response_schema
from image_service.web.schemas import OwnerQuerySchema

ALBUM = "/albums/{album_id:[0-9a-f]{32}}"
_docs = {"tags": ["albums"], "security": [{BEARER: []}]}


def _name(**kwargs: Any) -> Text:
    return Text(validate=validate.Length(min=1, max=MAX_NAME_LENGTH), **kwargs)


def _description(**kwargs: Any) -> Text:
    return Text(multiline=True, validate=validate.Length(max=MAX_DESCRIPTION_LENGTH), **kwargs)


class AlbumCreateSchema(StrictSchema):
    name = _name(required=True)
    description = _description(load_default="")
    cover = fields.String(
        load_default=None,
        validate=IMAGE_ID,
        metadata={"description": "One of your images, shown while it is ready."},
    )


class AlbumPatchSchema(StrictSchema):
    name = _name()
    description = _description()
    cover = fields.String(
        allow_none=True,
        validate=IMAGE_ID,
        metadata={"description": "One of your images; null clears it."},
    )

    @validates_schema
    def _something(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError("Change at least one of name, description and cover.")


class AlbumImagesSchema(StrictSchema):
    image_ids = fields.List(
        fields.String(validate=IMAGE_ID),
        required=True,
        validate=validate.Length(min=1, max=MAX_IMAGES_PER_CALL),
        metadata={"description": f"1 to {MAX_IMAGES_PER_CALL} of your images."},
    )


class AlbumPageQuerySchema(OwnerQuerySchema):
    limit = page_limit_field(DEFAULT_PAGE_SIZE)
    cursor = page_cursor_field()


class AlbumSchema(Schema):
    album_id = fields.String(required=True)
    name = fields.String(required=True)
    description = fields.String(required=True)
    cover = fields.String(allow_none=True)
    created_at = UtcTimestamp(required=True)
    updated_at = UtcTimestamp(required=True)


class AlbumListSchema(Schema):
    items = fields.List(fields.Nested(AlbumSchema), required=True)


class AlbumPageSchema(AlbumSchema):
    cover_image = fields.Dict(
        allow_none=True, metadata={"description": "The cover, as GET /images/{id} shows it."}
    )
    images = fields.List(
        fields.Dict(),
        required=True,
        metadata={"description": "A page of the album's ready images, newest upload first."},
    )
    next_cursor = fields.String(allow_none=True)


class AlbumImagesResultSchema(Schema):
    results = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        required=True,
        metadata={
            "description": "Each image's outcome: ok, image_not_found, already_in_album, "
            "not_in_album or too_many_albums."
        },
    )


def _album(album: Album) -> dict[str, Any]:
    return {
        "album_id": album.album_id,
        "name": album.name,
        "description": album.description,
        "cover": album.cover,
        "created_at": album.created_at,
        "updated_at": album.updated_at,
    }


_one = AlbumSchema()
_listed = AlbumListSchema()
_paged = AlbumPageSchema()
_results = AlbumImagesResultSchema()


def _json(schema: Schema, body: Any, status: int = 200) -> web.Response:
    return web.json_response(schema.dump(body), status=status, dumps=json_text)


@docs(summary="Make an album", **_docs)
@querystring_schema(OwnerQuerySchema)
@json_schema(AlbumCreateSchema)
@response_schema(AlbumSchema, 201)
async def create_album(request: web.Request) -> web.Response:
    body = request["json"]
    album = await request.app[ALBUMS].create(
        request[PRINCIPAL],
        owner_param(request),
        name=body["name"],
        description=body["description"],
        cover=body["cover"],
    )
    return _json(_one, _album(album), status=201)


@docs(summary="Your albums, newest first", **_docs)
@querystring_schema(OwnerQuerySchema)
@response_schema(AlbumListSchema, 200)
async def list_albums(request: web.Request) -> web.Response:
    albums = await request.app[ALBUMS].of_owner(request[PRINCIPAL], owner_param(request))
    return _json(_listed, {"items": [_album(album) for album in albums]})


@docs(
    summary="An album and a page of its images",
    description="Ready images only: one in the trash (or quarantined) is left out until it is "
    "restored. A page reads one page of members.",
    **_docs,
)
@querystring_schema(AlbumPageQuerySchema)
@response_schema(AlbumPageSchema, 200)
async def get_album(request: web.Request) -> web.Response:
    query = request["querystring"]
    page: AlbumPage = await request.app[ALBUMS].page(
        request[PRINCIPAL],
        request.match_info["album_id"],
        query.get("user_id"),
        limit=query["limit"],
        cursor=query["cursor"],
    )
    owns = query.get("user_id") in (None, request[PRINCIPAL].user_id)
    body = {
        **_album(page.album),
        "cover_image": None if page.cover is None else image_view(page.cover, gps=owns),
        "images": [image_view(record, gps=owns) for record in page.images],
        "next_cursor": page.next_cursor,
    }
    return _json(_paged, body)


@docs(summary="Rename an album, describe it, or set its cover", **_docs)
@querystring_schema(OwnerQuerySchema)
@json_schema(AlbumPatchSchema)
@response_schema(AlbumSchema, 200)
async def update_album(request: web.Request) -> web.Response:
    body = request["json"]
    album = await request.app[ALBUMS].update(
        request[PRINCIPAL],
        request.match_info["album_id"],
        owner_param(request),
        name=body.get("name"),
        description=body.get("description"),
        cover=body.get("cover"),
        clear_cover="cover" in body and body["cover"] is None,
    )
    return _json(_one, _album(album))


@docs(summary="Delete an album (its images stay)", **_docs)
@querystring_schema(OwnerQuerySchema)
@response_schema(None, 204)
async def delete_album(request: web.Request) -> web.Response:
    await request.app[ALBUMS].delete(
        request[PRINCIPAL], request.match_info["album_id"], owner_param(request)
    )
    return web.Response(status=204)


@docs(summary=f"Add up to {MAX_IMAGES_PER_CALL} images to an album", **_docs)
@querystring_schema(OwnerQuerySchema)
@json_schema(AlbumImagesSchema)
@response_schema(AlbumImagesResultSchema, 200)
async def add_album_images(request: web.Request) -> web.Response:
    results = await request.app[ALBUMS].add(
        request[PRINCIPAL],
        request.match_info["album_id"],
        owner_param(request),
        request["json"]["image_ids"],
    )
    return _json(_results, {"results": results})


@docs(summary=f"Take up to {MAX_IMAGES_PER_CALL} images out of an album", **_docs)
@querystring_schema(OwnerQuerySchema)
@json_schema(AlbumImagesSchema)
@response_schema(AlbumImagesResultSchema, 200)
async def remove_album_images(request: web.Request) -> web.Response:
    results = await request.app[ALBUMS].remove(
        request[PRINCIPAL],
        request.match_info["album_id"],
        owner_param(request),
        request["json"]["image_ids"],
    )
    return _json(_results, {"results": results})
