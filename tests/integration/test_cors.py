"""CORS: browser pages of the configured origins may call the API and upload to the bucket."""

from __future__ import annotations

from tests import images
from tests.integration.conftest import Api, MakeApi

APP = "https://app.example"
PREFLIGHT = {
    "Origin": APP,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}


async def test_a_preflight_from_an_allowed_origin_is_answered_without_a_token(
    make_api: MakeApi,
) -> None:
    api = await make_api(cors_origins=(APP,))

    async with api.client.options("/images/upload", headers=PREFLIGHT) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == APP
        assert "POST" in response.headers["Access-Control-Allow-Methods"]
        allowed = response.headers["Access-Control-Allow-Headers"].lower()
        assert "authorization" in allowed
        assert "content-type" in allowed
        assert response.headers["Vary"] == "Origin"


async def test_answers_and_errors_are_readable_by_an_allowed_origin(make_api: MakeApi) -> None:
    api = await make_api(cors_origins=(APP,))

    ok_status, _, ok = await api.call("GET", "/images", headers={"Origin": APP})
    denied_status, _, denied = await api.call("GET", "/images", user=None, headers={"Origin": APP})

    assert (ok_status, denied_status) == (200, 401)
    for headers in (ok, denied):
        assert headers["Access-Control-Allow-Origin"] == APP
        assert "X-Request-ID" in headers["Access-Control-Expose-Headers"]


async def test_another_origin_gets_no_cors_grant(make_api: MakeApi) -> None:
    api = await make_api(cors_origins=(APP,))
    elsewhere = {**PREFLIGHT, "Origin": "https://evil.example"}

    async with api.client.options("/images/upload", headers=elsewhere) as preflight:
        assert "Access-Control-Allow-Origin" not in preflight.headers
    _, _, headers = await api.call("GET", "/images", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in headers


async def test_any_origin_is_allowed_by_default(api: Api) -> None:
    _, _, headers = await api.call("GET", "/images", headers={"Origin": "https://any.example"})

    assert headers["Access-Control-Allow-Origin"] == "*"


async def test_init_gives_the_bucket_the_same_origins_for_direct_uploads(
    make_api: MakeApi,
) -> None:
    api = await make_api(cors_origins=(APP,))
    rules = api.s3.get_bucket_cors(Bucket=api.settings.bucket)["CORSRules"]
    assert [rule["AllowedOrigins"] for rule in rules] == [[APP]]

    # S3 (moto's, applying those rules) grants the browser's preflight for a POST-policy upload.
    upload = await api.upload_url(method="POST")
    async with api.http.options(upload["upload_url"], headers=PREFLIGHT) as preflight:
        assert preflight.status == 200
        assert preflight.headers["Access-Control-Allow-Origin"] == APP
    assert await api.send_to_s3(upload, images.jpeg()) in (200, 204)
