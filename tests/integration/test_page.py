"""The page at `/` as the API serves it (the browser test drives it in Chromium)."""

from __future__ import annotations

from tests.integration.conftest import Api, MakeApi


async def test_the_page_and_its_files_are_served_without_a_token(
    api: Api, moto_endpoint: str
) -> None:
    async with api.client.get("/") as page:
        assert page.status == 200
        assert page.content_type == "text/html"
        html = await page.text()
        policy = page.headers["Content-Security-Policy"]
    for asset in ("/static/app.js", "/static/app.css"):
        assert asset in html
        async with api.client.get(asset) as response:
            assert response.status == 200
    # No inline code, so scripts may come from this origin only; S3 is the one other peer.
    assert "default-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert f"connect-src 'self' {moto_endpoint};" in policy
    assert "frame-ancestors 'none'" in policy


async def test_serve_offers_no_token_minting(api: Api) -> None:
    async with api.client.get("/") as page:
        assert "data-dev-tokens" not in await page.text()
    status, body, _ = await api.call("POST", "/dev/token", user=None)

    assert status == 404
    assert body["error"]["code"] == "not_found"


async def test_dev_mints_tokens_for_the_demo_user(make_api: MakeApi) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from image_service.programs.app import create_app

    api = await make_api()
    app = create_app(api.settings, dev_tokens=True)
    async with TestClient(TestServer(app)) as dev:
        async with dev.get("/") as page:
            assert 'data-dev-tokens="true"' in await page.text()
        async with dev.post("/dev/token") as minted:
            token = (await minted.json())["token"]
        async with dev.get("/images", headers={"Authorization": f"Bearer {token}"}) as listed:
            assert listed.status == 200


async def test_files_outside_the_static_folder_are_not_served(api: Api) -> None:
    for path in ("/static/../settings.py", "/static/%2e%2e/settings.py"):
        async with api.client.get(path) as response:
            assert response.status in (403, 404), path
