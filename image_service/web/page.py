"""The browser page at `/`: static files shipped in the package, no build step and no CDN.

The page signs in with a pasted token (or, under `image-service dev` only, one minted by
`POST /dev/token`), uploads straight to S3 through POST policies, and shows the gallery.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import hdrs, web

from image_service.auth.tokens import DEV_TOKEN_TTL_SECONDS, DEV_USER, issue_token
from image_service.web.keys import OBJECT_STORE, SETTINGS
from image_service.web.middlewares import public

STATIC = resources.files("image_service.web") / "static"
_INDEX = web.AppKey("page_index", str)
_SHARE = web.AppKey("share_page", str)
# A shared gallery's page: its scripts and styles from here, its images from here (renditions
# through the link's signed URLs), nothing else, never framed, never sending a Referer (the
# page's own URL is the link).
_SHARE_POLICY = "; ".join(
    (
        "default-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)


def _content_security_policy(s3_origin: str) -> str:
    # Scripts and styles from this origin only (the page has no inline code); the one other
    # peer is S3, for uploads and thumbnails through presigned URLs.
    return "; ".join(
        (
            "default-src 'self'",
            f"connect-src 'self' {s3_origin}",
            f"img-src 'self' data: blob: {s3_origin}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )


@public
async def index(request: web.Request) -> web.Response:
    return web.Response(
        text=request.app[_INDEX],
        content_type="text/html",
        headers={
            hdrs.CONTENT_SECURITY_POLICY: _content_security_policy(
                request.app[OBJECT_STORE].url_origin
            ),
            hdrs.CACHE_CONTROL: "no-cache",
        },
    )


@public
async def mint_dev_token(request: web.Request) -> web.Response:
    """Dev only (never registered by `serve`): a token for the demo user, for the page."""
    settings = request.app[SETTINGS]
    token = issue_token(settings.jwt_secret, DEV_USER, ttl_seconds=DEV_TOKEN_TTL_SECONDS)
    return web.json_response(
        {"token": token, "user": DEV_USER}, headers={"Cache-Control": "no-store"}
    )


def share_page(request: web.Request, *, status: int = 200) -> web.Response:
    """The gallery page of a share link: a shell that reads the link's JSON itself (and says
    why, for a link that has ended or never was: ``status``)."""
    return web.Response(
        status=status,
        text=request.app[_SHARE],
        content_type="text/html",
        headers={
            hdrs.CONTENT_SECURITY_POLICY: _SHARE_POLICY,
            hdrs.CACHE_CONTROL: "no-store",
            "Referrer-Policy": "no-referrer",
        },
    )


def setup_page(app: web.Application, *, dev_tokens: bool) -> None:
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    if dev_tokens:
        html = html.replace("<body>", '<body data-dev-tokens="true">', 1)
        app.router.add_post("/dev/token", mint_dev_token)
    app[_INDEX] = html
    app[_SHARE] = (STATIC / "share.html").read_text(encoding="utf-8")
    app.router.add_get("/", index, allow_head=False)
    app.router.add_static("/static", str(STATIC))  # public: see `is_public`
