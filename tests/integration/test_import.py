"""Import by URL: a worker fetches the image from where it is, then it is verified as any upload
is; every form of a URL to a place the service must not reach is refused, and no request ever
reaches a refused address."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from image_service.domain.callbacks import public_address
from image_service.domain.imports import FetchRefused
from image_service.programs.embedded import free_port
from image_service.settings import Settings
from image_service.worker.fetch import UrlFetcher
from tests import images
from tests.integration.conftest import Api, MakeApi, token
from tests.processes import run_command

MAX_UPLOAD = Settings.max_upload_bytes
PHOTO = images.jpeg(320, 240)


@dataclass
class Origin:
    """An HTTP server on loopback holding images, and what reached it, by path."""

    host: str
    port: int
    hits: Counter[str] = field(default_factory=Counter)

    def url(self, path: str, host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"


@asynccontextmanager
async def origin(host: str = "127.0.0.1", redirect_to: str = "") -> AsyncIterator[Origin]:
    port = free_port()
    state = Origin(host, port)

    async def handle(request: web.Request) -> web.StreamResponse:
        state.hits[request.path] += 1
        path = request.path
        if path == "/photo.jpg":
            return web.Response(body=PHOTO, content_type="image/jpeg")
        if path == "/mislabelled":  # a JPEG served as text: its bytes say what it is
            return web.Response(body=PHOTO, content_type="text/plain")
        if path == "/page.html":
            return web.Response(body=images.HTML, content_type="text/html")
        if path == "/truncated.jpg":
            return web.Response(body=PHOTO[: len(PHOTO) // 2], content_type="image/jpeg")
        if path == "/declares-too-much":
            response = web.StreamResponse(headers={"Content-Length": str(MAX_UPLOAD + 1)})
            await response.prepare(request)
            await response.write(PHOTO)
            return response
        if path == "/streams-too-much":  # no length declared: the cap counts what arrives
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            chunk = PHOTO + b"\0" * (1024 * 1024)
            sent = 0
            try:
                while sent <= MAX_UPLOAD:
                    await response.write(chunk)
                    sent += len(chunk)
            except (ConnectionError, RuntimeError):
                pass  # the fetcher hung up: what it should do
            return response
        if path.startswith("/hops/"):  # /hops/3: three redirects, then the photo
            left = int(path.removeprefix("/hops/"))
            raise web.HTTPFound("/photo.jpg" if left <= 1 else f"/hops/{left - 1}")
        if path == "/elsewhere":
            raise web.HTTPFound(redirect_to)
        if path == "/slow":  # longer than the deadline the tests of it set
            await asyncio.sleep(3)
            return web.Response(body=PHOTO, content_type="image/jpeg")
        return web.Response(status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)  # a held /slow is no reason to wait
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    try:
        yield state
    finally:
        await runner.cleanup()


@pytest.fixture
async def images_origin() -> AsyncIterator[Origin]:
    async with origin() as state:
        yield state


async def _import(api: Api, url: str, **body: Any) -> tuple[int, Any, Any]:
    headers = body.pop("headers", {})
    return await api.call("POST", "/images/import", json={"url": url, **body}, headers=headers)


async def _imported(api: Api, url: str, **body: Any) -> dict[str, Any]:
    status, image, headers = await _import(api, url, **body)
    assert status == 202, image
    assert headers["Location"] == f"/images/{image['image_id']}"
    assert image["status"] == "fetching"
    return await api.processed(image["image_id"])


async def test_an_imported_url_becomes_a_ready_image(
    make_api: MakeApi, images_origin: Origin
) -> None:
    # This test's subject needs a fixture on loopback: IMAGE_SERVICE_IMPORT_ALLOW_PRIVATE.
    api = await make_api(import_allow_private=True)
    url = images_origin.url("/mislabelled")
    image = await _imported(api, url, tags=["Archive"], description="from the old site")
    assert image["status"] == "ready", image
    assert (image["content_type"], image["width"], image["height"]) == ("image/jpeg", 320, 240)
    assert (image["tags"], image["description"]) == (["archive"], "from the old site")
    assert image["source_url"] == url
    assert image["variants"]
    status, download, _ = await api.call("GET", f"/images/{image['image_id']}/download")
    assert status == 200
    async with api.http.get(download["download_url"]) as response:
        assert await response.read() == PHOTO

    # Three redirects are followed; a fourth is refused.
    assert (await _imported(api, images_origin.url("/hops/3")))["status"] == "ready"
    refused = await _imported(api, images_origin.url("/hops/4"))
    assert (refused["status"], refused["reason"]) == ("rejected", "fetch_refused")


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/declares-too-much", "too_large"),
        ("/streams-too-much", "too_large"),
        ("/page.html", "not_an_image"),
        ("/missing", "fetch_failed"),
        ("/truncated.jpg", "corrupt_image"),
    ],
)
async def test_what_cannot_be_an_image_ends_rejected_with_its_reason(
    make_api: MakeApi, images_origin: Origin, path: str, reason: str
) -> None:
    api = await make_api(import_allow_private=True)
    image = await _imported(api, images_origin.url(path))
    assert (image["status"], image["reason"]) == ("rejected", reason)
    # The refusal is recorded first, then what arrived is removed (completion.py).
    async with asyncio.timeout(5):
        while [key for key in api.object_keys() if image["image_id"] in key]:  # noqa: ASYNC110
            await asyncio.sleep(0.1)


async def test_a_fetch_longer_than_its_deadline_is_rejected(
    make_api: MakeApi, images_origin: Origin
) -> None:
    # This test's subject: IMAGE_SERVICE_IMPORT_TIMEOUT_SECONDS.
    api = await make_api(import_allow_private=True, import_timeout_seconds=1)
    image = await _imported(api, images_origin.url("/slow"))
    assert (image["status"], image["reason"]) == ("rejected", "fetch_failed")


def _refused_forms(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/photo.jpg",
        f"http://localhost:{port}/photo.jpg",  # a DNS name resolving to 127.0.0.1
        f"http://2130706433:{port}/photo.jpg",  # 127.0.0.1 in decimal
        f"http://0x7f.0.0.1:{port}/photo.jpg",  # in hex
        f"http://0177.0.0.1:{port}/photo.jpg",  # in octal
        f"http://127.1:{port}/photo.jpg",  # shortened
        f"http://[::1]:{port}/photo.jpg",
        f"http://[::ffff:127.0.0.1]:{port}/photo.jpg",  # IPv4-mapped IPv6
        f"http://[64:ff9b::7f00:1]:{port}/photo.jpg",  # NAT64 of 127.0.0.1
        f"http://0.0.0.0:{port}/photo.jpg",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[fd00:ec2::254]/latest/meta-data/",  # the metadata service over IPv6
        "http://10.0.0.1/photo.jpg",
        "http://172.16.0.1/photo.jpg",
        "http://192.168.1.1/photo.jpg",
        "http://100.64.0.1/photo.jpg",  # carrier-grade NAT
        "http://[fe80::1]/photo.jpg",
        "http://[fc00::1]/photo.jpg",
        f"ftp://127.0.0.1:{port}/photo.jpg",
        f"gopher://127.0.0.1:{port}/photo.jpg",
        "file:///etc/passwd",
        "http://user:secret@example.com/photo.jpg",
        "http:///photo.jpg",
        "//example.com/photo.jpg",
        "http://example.com:99999/photo.jpg",
        "not a url",
    ]


async def test_every_form_of_a_private_or_malformed_url_is_refused_at_once(
    api: Api, images_origin: Origin
) -> None:
    forms = _refused_forms(images_origin.port)
    assert len(forms) >= 20
    for index, form in enumerate(forms):
        # A prober each: the import rate is per caller, and a refusal spends it too.
        user = f"prober-{index}"
        status, body, _ = await api.call("POST", "/images/import", json={"url": form}, user=user)
        assert (status, body["error"]["code"]) == (422, "import_refused"), form
        assert body["error"]["details"]["reason"], form
        status, page, _ = await api.call("GET", "/images", user=user)
        assert page["items"] == [], "nothing was stored for a refused URL"
    await asyncio.sleep(0.5)
    assert sum(images_origin.hits.values()) == 0, "no request reached a refused address"


async def test_private_addresses_allowed_the_metadata_service_is_still_refused(
    make_api: MakeApi,
) -> None:
    api = await make_api(import_allow_private=True)
    for url in (
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.170.2/v2/credentials",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
    ):
        status, body, _ = await _import(api, url)
        assert (status, body["error"]["code"]) == (422, "import_refused"), url


async def test_a_redirect_to_a_private_address_is_refused_without_reaching_it() -> None:
    """What a public server may do: answer with a redirect to an address inside. Here the
    public server is the one on 127.0.0.2 (this fetcher's public addresses are the internet's
    and that one), its redirect leads to 127.0.0.1."""

    def public(address: str) -> bool:
        return address == "127.0.0.2" or public_address(address)

    async with origin() as inside:
        target = inside.url("/photo.jpg")
        async with origin("127.0.0.2", redirect_to=target) as outside:
            fetcher = UrlFetcher(allow_private=False, deadline_seconds=30, is_public=public)
            try:
                with await fetcher.fetch(outside.url("/photo.jpg"), max_bytes=MAX_UPLOAD) as ok:
                    assert ok.file.read() == PHOTO  # the public one is fetched
                with pytest.raises(FetchRefused) as refused:
                    await fetcher.fetch(outside.url("/elsewhere"), max_bytes=MAX_UPLOAD)
                name = outside.url("/elsewhere", host="localhost")
                with pytest.raises(FetchRefused) as by_name:
                    await fetcher.fetch(name, max_bytes=MAX_UPLOAD)
            finally:
                await fetcher.close()
    assert refused.value.code == "fetch_refused"
    assert by_name.value.code == "fetch_refused"
    assert outside.hits == Counter({"/photo.jpg": 1, "/elsewhere": 1})
    assert inside.hits == Counter(), "the private address was never reached"


async def test_a_name_that_resolves_elsewhere_at_connect_time_is_refused() -> None:
    """DNS rebinding: the name passes the check, then resolves to a private address when the
    connection is made. The connection goes only to an address that passed, so it is refused
    (here the first answer for the name is public, every later one private)."""
    answers: list[str] = []

    def public(address: str) -> bool:
        answers.append(address)
        return len(answers) == 1  # the check's answer: public; the connection's: not

    async with origin() as inside:
        fetcher = UrlFetcher(allow_private=False, deadline_seconds=30, is_public=public)
        try:
            with pytest.raises(FetchRefused) as refused:
                await fetcher.fetch(inside.url("/photo.jpg", host="localhost"), max_bytes=10)
        finally:
            await fetcher.close()
    assert refused.value.code == "fetch_refused"
    assert len(answers) >= 2, "checked, then checked again at connect time"
    assert inside.hits == Counter()


async def test_a_keyed_import_is_one_image_and_one_fetch(
    make_api: MakeApi, images_origin: Origin
) -> None:
    api = await make_api(import_allow_private=True)
    url = images_origin.url("/photo.jpg")
    key = {"Idempotency-Key": "migration-0001"}
    first = await _imported(api, url, headers=key)
    status, again, _ = await _import(api, url, headers=key)
    assert (status, again["image_id"], again["status"]) == (202, first["image_id"], "ready")
    assert images_origin.hits["/photo.jpg"] == 1
    status, body, _ = await _import(api, images_origin.url("/hops/1"), headers=key)
    assert (status, body["error"]["code"]) == (422, "idempotency_key_reused")


async def test_the_rate_and_the_quota_apply_before_anything_is_fetched(
    make_api: MakeApi, images_origin: Origin
) -> None:
    api = await make_api(import_allow_private=True)
    burst = Settings.import_burst
    codes = [(await _import(api, images_origin.url(f"/missing-{n}")))[0] for n in range(burst + 1)]
    assert codes == [202] * burst + [429]

    # This test's subject too: the image quota (IMAGE_SERVICE_MAX_IMAGES_PER_USER).
    full = await make_api(import_allow_private=True, max_images_per_user=1)
    await full.ready_images(1)
    status, body, _ = await _import(full, images_origin.url("/photo.jpg"))
    assert (status, body["error"]["code"]) == (403, "quota_exceeded"), body
    assert images_origin.hits["/photo.jpg"] == 0


async def test_each_user_has_a_bounded_number_of_imports_being_fetched(
    make_api: MakeApi, images_origin: Origin
) -> None:
    # This test's subject: IMAGE_SERVICE_MAX_IMPORTS_PER_USER (no worker: they stay fetching).
    api = await make_api(embedded_worker=False, import_allow_private=True, max_imports_per_user=3)
    for n in range(3):
        assert (await _import(api, images_origin.url(f"/photo-{n}.jpg")))[0] == 202
    status, body, headers = await _import(api, images_origin.url("/photo-3.jpg"))
    assert (status, body["error"]["code"]) == (429, "too_many_imports")
    assert headers["Retry-After"] == "1"
    status, _, _ = await api.call(
        "POST", "/images/import", json={"url": images_origin.url("/photo.jpg")}, user="bob"
    )
    assert status == 202  # another user's bound is theirs


async def test_an_import_deleted_while_fetching_leaves_nothing(
    make_api: MakeApi, images_origin: Origin
) -> None:
    api = await make_api(import_allow_private=True, import_timeout_seconds=30)
    status, image, _ = await _import(api, images_origin.url("/slow"))
    assert status == 202
    assert (await api.call("DELETE", f"/images/{image['image_id']}"))[0] == 204
    status, _, _ = await api.call("GET", f"/images/{image['image_id']}")
    assert status == 404


def test_loopback_aliases_work_here() -> None:
    """The redirect test serves its "public" origin on 127.0.0.2: Linux routes all of 127/8."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.2", 0))


async def test_the_cli_imports_urls_then_tags_them_in_bulk(
    make_api: MakeApi, images_origin: Origin
) -> None:
    api = await make_api(import_allow_private=True)
    environment = api.child_environment(API_URL=api.url, API_TOKEN=token("alice"))
    urls = [images_origin.url("/photo.jpg"), images_origin.url("/page.html")]
    code, out, err = await run_command(
        "import", *urls, "--tag", "old-site", "--wait", env=environment
    )
    assert code == 1, err  # one of them is no image
    ready, rejected = (line.split("\t") for line in out.splitlines())
    assert (ready[1:], rejected[1:]) == (
        ["ready", urls[0]],
        ["rejected", urls[1], "not_an_image"],
    )
    assert "fetching as" in err

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "image_service",
        "batch",
        "tag",
        "--tag",
        "migrated",
        "--stdin",
        env=environment,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    out_bytes, _ = await process.communicate(out.encode())
    assert process.returncode == 0  # a rejected image is still the owner's to tag
    results = dict(line.split("\t") for line in out_bytes.decode().splitlines())
    assert results == {ready[0]: "ok", rejected[0]: "ok"}
    assert (await api.call("GET", f"/images/{ready[0]}"))[1]["tags"] == ["old-site", "migrated"]
    # Ids after the options, as people type them (argparse alone would refuse them).
    code, out, err = await run_command(
        "batch", "untag", "--tag", "old-site", ready[0], env=environment
    )
    assert (code, out) == (0, f"{ready[0]}\tok\n"), err
    assert (await api.call("GET", f"/images/{ready[0]}"))[1]["tags"] == ["migrated"]
