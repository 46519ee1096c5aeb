"""The whole URL table."""

from __future__ import annotations

from aiohttp import web

from image_service.web import handlers

# Image ids are UUIDs; anything else cannot name an image and is answered 404 by the router.
_IMAGE = "/images/{image_id:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}}"


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/images/upload", handlers.create_upload)
    app.router.add_post("/images/check", handlers.check_digests)
    app.router.add_get("/images", handlers.list_images, allow_head=False)
    app.router.add_get("/events", handlers.image_events, allow_head=False)
    app.router.add_get(_IMAGE, handlers.get_image, allow_head=False)
    app.router.add_patch(_IMAGE, handlers.update_image)
    app.router.add_delete(_IMAGE, handlers.delete_image)
    app.router.add_post(_IMAGE + "/complete", handlers.complete_upload)
    app.router.add_post(_IMAGE + "/restore", handlers.restore_image)
    app.router.add_delete("/trash", handlers.empty_trash)
    app.router.add_get(_IMAGE + "/parts", handlers.upload_parts, allow_head=False)
    app.router.add_get(_IMAGE + "/download", handlers.download_image, allow_head=False)
    app.router.add_get(_IMAGE + "/render", handlers.render_url, allow_head=False)
    # Any segments: whatever they hold, a URL this service did not sign is a 403, not a 404.
    app.router.add_get(
        "/r/{owner}/{image_id}/{spec}/{expires}/{signature}", handlers.deliver_rendition
    )
    app.router.add_get("/webhooks/secret", handlers.callback_secret, allow_head=False)
    app.router.add_get("/health", handlers.health)
    app.router.add_get("/ready", handlers.ready, allow_head=False)
    app.router.add_get("/metrics", handlers.metrics, allow_head=False)
