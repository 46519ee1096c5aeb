"""The generated OpenAPI 3 document and the docs page."""

from __future__ import annotations

import re

from openapi_spec_validator import validate

from tests.integration.conftest import Api

ROUTES = {
    ("post", "/images/upload"): ("UploadRequest", "201", "UploadResponse"),
    ("post", "/images/check"): ("DigestCheck", "200", "DigestCheckResponse"),
    ("get", "/images"): (None, "200", "ImagePage"),
    ("get", "/events"): (None, "200", None),
    ("post", "/images/batch"): ("BatchRequest", "200", "BatchAnswer"),
    ("post", "/images/import"): ("ImportRequest", "202", "Image"),
    ("get", "/jobs/{job_id}"): (None, "200", "Job"),
    ("get", "/images/{image_id}"): (None, "200", "Image"),
    ("patch", "/images/{image_id}"): ("ImagePatch", "200", "Image"),
    ("delete", "/images/{image_id}"): (None, "204", None),
    ("post", "/images/{image_id}/complete"): (None, "200", "Image"),
    ("post", "/images/{image_id}/restore"): (None, "200", "Image"),
    ("delete", "/trash"): (None, "200", "Purged"),
    ("get", "/images/{image_id}/download"): (None, "200", "DownloadResponse"),
    ("get", "/images/{image_id}/parts"): (None, "200", "PartsResponse"),
    ("get", "/images/{image_id}/render"): (None, "200", "RenderResponse"),
    ("get", "/r/{owner}/{image_id}/{edition}/{spec}/{expires}/{signature}"): (None, "200", None),
    ("get", "/webhooks/secret"): (None, "200", "CallbackSecret"),
    ("post", "/api-keys"): ("ApiKeyCreate", "201", "ApiKeyCreated"),
    ("get", "/api-keys"): (None, "200", "ApiKeyList"),
    ("delete", "/api-keys/{key_id}"): (None, "204", None),
    ("post", "/shares"): ("ShareCreate", "201", "ShareCreated"),
    ("get", "/shares"): (None, "200", "ShareList"),
    ("delete", "/shares/{share_id}"): (None, "204", None),
    ("get", "/s/{token}"): (None, "200", "Shared"),
    ("get", "/s/r/{share}/{image_id}/{edition}/{spec}/{expires}/{signature}"): (None, "200", None),
    ("get", "/s/o/{share}/{image_id}/{expires}/{signature}"): (None, "200", None),
    ("post", "/albums"): ("AlbumCreate", "201", "Album"),
    ("get", "/albums"): (None, "200", "AlbumList"),
    ("get", "/albums/{album_id}"): (None, "200", "AlbumPage"),
    ("patch", "/albums/{album_id}"): ("AlbumPatch", "200", "Album"),
    ("delete", "/albums/{album_id}"): (None, "204", None),
    ("put", "/albums/{album_id}/images"): ("AlbumImages", "200", "AlbumImagesResult"),
    ("delete", "/albums/{album_id}/images"): ("AlbumImages", "200", "AlbumImagesResult"),
    ("get", "/health"): (None, "200", "Health"),
    ("get", "/ready"): (None, "200", "Health"),
    ("get", "/metrics"): (None, "200", None),
}


async def test_spec_is_valid_openapi_3_and_lists_every_route(api: Api) -> None:
    status, spec, _ = await api.call("GET", "/docs/openapi.json", user=None)
    assert status == 200
    assert spec["openapi"].startswith("3.")
    validate(spec)

    documented = {
        (method, path) for path, operations in spec["paths"].items() for method in operations
    }
    assert documented == set(ROUTES)

    for (method, path), (request, code, response) in ROUTES.items():
        operation = spec["paths"][path][method]
        if request:
            ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert ref == f"#/components/schemas/{request}"
        else:
            assert "requestBody" not in operation
        if response:
            ref = operation["responses"][code]["content"]["application/json"]["schema"]["$ref"]
            assert ref == f"#/components/schemas/{response}"
        else:
            assert code in operation["responses"]
        error = operation["responses"]["default"]["content"]["application/json"]["schema"]
        assert error["$ref"] == "#/components/schemas/Error"
        secured = operation.get("security") == [{"bearerAuth": []}]
        assert secured == path.startswith(
            (
                "/images",
                "/events",
                "/trash",
                "/webhooks",
                "/api-keys",
                "/albums",
                "/shares",
                "/jobs",
            )
        ), path
        # The scope an API key needs, where one may call it at all.
        scope = operation.get("x-api-key-scope")
        if path.startswith("/api-keys") or not secured:
            assert scope is None, path
        else:
            assert scope in {
                "images:read",
                "images:write",
                "images:delete",
                "albums:write",
                "shares:write",
            }, path


async def test_spec_documents_parameters_and_schemas(api: Api) -> None:
    _, spec, _ = await api.call("GET", "/docs/openapi.json", user=None)
    listing = {p["name"]: p for p in spec["paths"]["/images"]["get"]["parameters"]}
    assert set(listing) == {
        "tag",
        "start_date",
        "end_date",
        "status",
        "sort",
        "taken_from",
        "taken_to",
        "limit",
        "cursor",
        "user_id",
    }
    assert listing["limit"]["schema"]["maximum"] == 100
    assert listing["tag"]["schema"]["type"] == "array"
    path_params = spec["paths"]["/images/{image_id}"]["get"]["parameters"]
    assert {
        "in": "path",
        "name": "image_id",
        "required": True,
        "schema": {"type": "string"},
    } in path_params
    upload = spec["components"]["schemas"]["UploadRequest"]
    assert upload["required"] == ["content_type"]
    assert upload["properties"]["method"]["enum"] == ["PUT", "POST", "MULTIPART"]
    assert upload["properties"]["if_exists"]["enum"] == ["create", "return"]
    assert upload["properties"]["part_checksums"]["maxItems"] == 1000
    check = spec["components"]["schemas"]["DigestCheck"]
    assert check["properties"]["checksums_sha256"]["maxItems"] == 500
    created = spec["paths"]["/images/upload"]["post"]["responses"]
    assert created["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/Image")
    assert upload["properties"]["description"]["maxLength"] == 2000
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


async def test_docs_page_is_served_without_a_cdn(api: Api) -> None:
    async with api.client.get("/docs") as response:
        assert response.status == 200
        page = await response.text()
    assert "/docs/openapi.json" in page
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources
    assert all(source.startswith("/docs/static/") for source in sources), sources
    for source in sources:
        async with api.client.get(source) as asset:
            assert asset.status == 200, source
