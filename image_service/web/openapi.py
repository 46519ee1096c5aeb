"""OpenAPI 3 from aiohttp-apispec.

aiohttp-apispec 3.0.0b2 builds an OpenAPI 2 document only (its APISpec is created with a fixed
``openapi_version="2.0"``). This subclass keeps its decorators, validation middleware, spec route
and bundled Swagger UI, and emits OpenAPI 3 instead: JSON bodies as ``requestBody``, parameters
with a ``schema``, responses under ``content``, and a bearer security scheme.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import aiohttp_apispec
from aiohttp import web
from aiohttp_apispec import AiohttpApiSpec
from aiohttp_apispec.utils import get_path_keys
from apispec import APISpec
from marshmallow import Schema

from image_service.web.schemas import ErrorSchema

_JSON = "application/json"
# HEAD mirrors GET (aiohttp adds it for load balancers); documenting it twice helps nobody.
_METHODS = {"get", "put", "post", "delete", "patch"}
BEARER = "bearerAuth"


class OpenApi3Spec(AiohttpApiSpec):  # type: ignore[misc]  # aiohttp-apispec is untyped
    def __init__(self, *, title: str, version: str, description: str, **kwargs: Any) -> None:
        super().__init__(title=title, version=version, **kwargs)
        self.spec = APISpec(
            title=title,
            version=version,
            openapi_version="3.0.3",
            plugins=(self.plugin,),
            info={"description": description},
        )
        self.spec.components.security_scheme(
            BEARER, {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
        )
        self.spec.components.schema("Error", schema=ErrorSchema)

    def _update_paths(self, data: dict[str, Any], method: str, url_path: str) -> None:
        if method not in _METHODS:
            return
        operation: dict[str, Any] = {
            key: value
            for key, value in data.items()
            # "produces" is OpenAPI 2; content types live under each body and response in 3.
            if key not in {"schemas", "parameters", "responses", "produces", "consumes"}
        }
        parameters: list[dict[str, Any]] = list(data.get("parameters", []))
        for entry in data.get("schemas", []):
            if entry["location"] == "json":
                operation["requestBody"] = {
                    "required": True,
                    "content": {_JSON: {"schema": entry["schema"]}},
                }
            else:
                parameters.extend(
                    self.plugin.converter.schema2parameters(
                        entry["schema"], location=entry["location"]
                    )
                )
        documented = {p["name"] for p in parameters if p["in"] == "path"}
        for name in get_path_keys(url_path):
            if name not in documented:
                parameters.append(
                    {"in": "path", "name": name, "required": True, "schema": {"type": "string"}}
                )
        if parameters:
            operation["parameters"] = parameters

        responses: dict[str, Any] = {}
        for code, response in data.get("responses", {}).items():
            entry = {"description": response.get("description") or "OK"}
            if response.get("schema") is not None:
                entry["content"] = {_JSON: {"schema": response["schema"]}}
            responses[str(code)] = entry
        # Every error, whatever its status, is the one envelope.
        responses["default"] = {
            "description": "Error",
            "content": {_JSON: {"schema": "Error"}},
        }
        operation["responses"] = responses
        self.spec.path(path=url_path, operations={method: copy.deepcopy(operation)})


def setup_openapi(app: web.Application, *, title: str, version: str, description: str) -> None:
    spec = OpenApi3Spec(
        title=title,
        version=version,
        description=description,
        url="/docs/openapi.json",
        swagger_path="/docs",
        static_path="/docs/static",
    )
    spec.register(app)


# aiohttp-apispec's decorators, typed: each returns the handler it was given, unchanged.
Handler = TypeVar("Handler", bound=Callable[[web.Request], Awaitable[web.StreamResponse]])


def docs(**kwargs: Any) -> Callable[[Handler], Handler]:
    return cast("Callable[[Handler], Handler]", aiohttp_apispec.docs(**kwargs))


def json_schema(schema: type[Schema]) -> Callable[[Handler], Handler]:
    return cast("Callable[[Handler], Handler]", aiohttp_apispec.json_schema(schema))


def querystring_schema(schema: type[Schema]) -> Callable[[Handler], Handler]:
    return cast("Callable[[Handler], Handler]", aiohttp_apispec.querystring_schema(schema))


def response_schema(
    schema: type[Schema] | None, code: int, *, description: str | None = None
) -> Callable[[Handler], Handler]:
    return cast(
        "Callable[[Handler], Handler]",
        aiohttp_apispec.response_schema(schema, code, description=description),
    )


def idempotency_key_header(description: str) -> dict[str, Any]:
    """The ``Idempotency-Key`` request header, as the docs page shows it."""
    return {
        "in": "header",
        "name": "Idempotency-Key",
        "required": False,
        "description": description,
        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    }
