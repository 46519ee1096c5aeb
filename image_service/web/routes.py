"""The whole URL table, and the scope an API key needs for each route (domain/apikeys.py):
a route without one takes user tokens only."""

from __future__ import annotations

from aiohttp import web

from image_service.web import albums, batch, handlers
from image_service.web.apikeys import setup_api_key_routes
from image_service.web.fields import IMAGE_ID_PATTERN
from image_service.web.middlewares import scoped
from image_service.web.shares import setup_share_routes

# Image ids are UUIDs; anything else cannot name an image and is answered 404 by the router.
_IMAGE = f"/images/{{image_id:{IMAGE_ID_PATTERN}}}"
READ, WRITE, DELETE = "images:read", "images:write", "images:delete"
ALBUMS = "albums:write"


def setup_routes(app: web.Application) -> None:
    router = app.router
    router.add_post("/images/upload", scoped(WRITE, handlers.create_upload))
    router.add_post("/images/import", scoped(WRITE, handlers.import_image))
    router.add_post("/images/check", scoped(READ, handlers.check_digests))
    router.add_get("/images", scoped(READ, handlers.list_images), allow_head=False)
    router.add_post("/images/batch", scoped(WRITE, batch.run_batch))
    router.add_get(batch.JOB, scoped(READ, batch.get_job), allow_head=False)
    router.add_get("/events", scoped(READ, handlers.image_events), allow_head=False)
    router.add_get(_IMAGE, scoped(READ, handlers.get_image), allow_head=False)
    router.add_patch(_IMAGE, scoped(WRITE, handlers.update_image))
    router.add_delete(_IMAGE, scoped(DELETE, handlers.delete_image))
    router.add_post(_IMAGE + "/complete", scoped(WRITE, handlers.complete_upload))
    router.add_post(_IMAGE + "/restore", scoped(DELETE, handlers.restore_image))
    router.add_delete("/trash", scoped(DELETE, handlers.empty_trash))
    router.add_get(_IMAGE + "/parts", scoped(WRITE, handlers.upload_parts), allow_head=False)
    router.add_get(_IMAGE + "/download", scoped(READ, handlers.download_image), allow_head=False)
    router.add_get(_IMAGE + "/render", scoped(READ, handlers.render_url), allow_head=False)
    # Any segments: whatever they hold, a URL this service did not sign is a 403, not a 404.
    router.add_get(
        "/r/{owner}/{image_id}/{edition}/{spec}/{expires}/{signature}", handlers.deliver_rendition
    )
    # A backend verifying its callbacks needs their key.
    router.add_get("/webhooks/secret", scoped(READ, handlers.callback_secret), allow_head=False)
    router.add_post("/albums", scoped(ALBUMS, albums.create_album))
    router.add_get("/albums", scoped(READ, albums.list_albums), allow_head=False)
    router.add_get(albums.ALBUM, scoped(READ, albums.get_album), allow_head=False)
    router.add_patch(albums.ALBUM, scoped(ALBUMS, albums.update_album))
    router.add_delete(albums.ALBUM, scoped(ALBUMS, albums.delete_album))
    router.add_put(albums.ALBUM + "/images", scoped(ALBUMS, albums.add_album_images))
    router.add_delete(albums.ALBUM + "/images", scoped(ALBUMS, albums.remove_album_images))
    setup_share_routes(app, scoped)
    setup_api_key_routes(app)
    router.add_get("/health", handlers.health)
    router.add_get("/ready", handlers.ready, allow_head=False)
    router.add_get("/metrics", handlers.metrics, allow_head=False)
