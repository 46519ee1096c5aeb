"""``/api-keys``: the caller's scoped API keys (``domain/apikeys.py``), made, listed and
revoked with the owner's own token."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from marshmallow import Schema, fields, validate

from image_service.domain.apikeys import MAX_KEYS_PER_USER, MAX_NAME_LENGTH, SCOPES, ApiKey
from image_service.web.encoding import json_text
from image_service.web.fields import StrictSchema, Text, UtcTimestamp
from image_service.web.handlers import NO_STORE
from image_service.web.keys import API_KEYS, PRINCIPAL
from image_service.web.openapi import BEARER, docs, json_schema, response_schema

_KEY_ID = "{key_id:[0-9a-f]{16}}"
_docs = {"tags": ["api keys"], "security": [{BEARER: []}]}
_MANAGED = (
    " Needs the owner's own token: a key cannot make, list or revoke keys (403 "
    "user_token_required)."
)


class ApiKeyCreateSchema(StrictSchema):
    name = Text(
        required=True,
        validate=validate.Length(min=1, max=MAX_NAME_LENGTH),
        metadata={"description": "What the key is for, to recognize it in the list."},
    )
    scopes = fields.List(
        fields.String(validate=validate.OneOf(SCOPES)),
        required=True,
        validate=validate.Length(min=1, max=len(SCOPES)),
        metadata={"description": "What the key may do: " + ", ".join(SCOPES) + "."},
    )
    expires_at = fields.AwareDateTime(
        load_default=None,
        metadata={
            "description": "When the key stops working (ISO 8601 with a zone); never if absent."
        },
    )


class ApiKeySchema(Schema):
    key_id = fields.String(required=True)
    name = fields.String(required=True)
    scopes = fields.List(fields.String(), required=True)
    created_at = UtcTimestamp(required=True)
    expires_at = UtcTimestamp(allow_none=True)
    last_used_at = UtcTimestamp(
        allow_none=True,
        metadata={"description": "When a request last used it (to the minute)."},
    )


class ApiKeyCreatedSchema(ApiKeySchema):
    key = fields.String(
        required=True,
        metadata={
            "description": "The key: isk_<key id>_<secret>. Shown once, never again; "
            "send it as Authorization: Bearer <key>."
        },
    )


class ApiKeyListSchema(Schema):
    items = fields.List(fields.Nested(ApiKeySchema), required=True)


_key = ApiKeySchema()
_created = ApiKeyCreatedSchema()
_listed = ApiKeyListSchema()


def _view(key: ApiKey) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "name": key.name,
        "scopes": list(key.scopes),
        "created_at": key.created_at,
        "expires_at": key.expires_at,
        "last_used_at": key.last_used_at,
    }


@docs(
    summary="Make an API key with scopes",
    description=f"The key is answered once. An owner holds at most {MAX_KEYS_PER_USER} (409 "
    "too_many_api_keys)." + _MANAGED,
    **_docs,
)
@json_schema(ApiKeyCreateSchema)
@response_schema(ApiKeyCreatedSchema, 201)
async def create_api_key(request: web.Request) -> web.Response:
    body = request["json"]
    key, token = await request.app[API_KEYS].create(
        request[PRINCIPAL], name=body["name"], scopes=body["scopes"], expires_at=body["expires_at"]
    )
    answer = _created.dump({**_view(key), "key": token})
    return web.json_response(answer, status=201, headers=NO_STORE, dumps=json_text)


@docs(
    summary="The caller's API keys, newest first",
    description="Never the keys themselves: their ids, names, scopes and uses." + _MANAGED,
    **_docs,
)
@response_schema(ApiKeyListSchema, 200)
async def list_api_keys(request: web.Request) -> web.Response:
    keys = request.app[API_KEYS]
    listed = [_view(keys.with_last_use(key)) for key in await keys.list(request[PRINCIPAL])]
    return web.json_response(_listed.dump({"items": listed}), headers=NO_STORE, dumps=json_text)


@docs(
    summary="Revoke an API key",
    description="Refused here at once, and by every replica within "
    "IMAGE_SERVICE_API_KEY_CACHE_SECONDS (30)." + _MANAGED,
    **_docs,
)
@response_schema(None, 204)
async def revoke_api_key(request: web.Request) -> web.Response:
    await request.app[API_KEYS].revoke(request[PRINCIPAL], request.match_info["key_id"])
    return web.Response(status=204)


def setup_api_key_routes(app: web.Application) -> None:
    app.router.add_post("/api-keys", create_api_key)
    app.router.add_get("/api-keys", list_api_keys, allow_head=False)
    app.router.add_delete(f"/api-keys/{_KEY_ID}", revoke_api_key)
