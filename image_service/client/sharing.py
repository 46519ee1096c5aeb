"""The calls for what an owner keeps beside their images: albums, share links and API keys
(``ImageServiceClient`` has them all; this is their room)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from image_service.client.types import Album, ApiKey, ShareLink


class SharingCalls:
    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        """The API's JSON answer to one call (``ImageServiceClient._json``)."""
        raise NotImplementedError

    async def create_album(
        self, name: str, *, description: str = "", cover: str | None = None
    ) -> Album:
        """``POST /albums``: a new album of the caller's."""
        body: dict[str, Any] = {"name": name, "description": description}
        if cover is not None:
            body["cover"] = cover
        return Album.from_json(await self._json("POST", "/albums", json=body))

    async def albums(self) -> tuple[Album, ...]:
        """``GET /albums``: the caller's albums, newest first."""
        body = await self._json("GET", "/albums")
        return tuple(Album.from_json(item) for item in body["items"])

    async def album(self, album_id: str, *, limit: int = 20, cursor: str | None = None) -> Album:
        """``GET /albums/{id}``: the album with a page of its ready images."""
        params: dict[str, str] = {"limit": str(limit)}
        if cursor is not None:
            params["cursor"] = cursor
        return Album.from_json(await self._json("GET", f"/albums/{album_id}", params=params))

    async def update_album(self, album_id: str, **changes: str | None) -> Album:
        """``PATCH /albums/{id}``: ``name``, ``description``, ``cover`` (None clears it)."""
        return Album.from_json(await self._json("PATCH", f"/albums/{album_id}", json=changes))

    async def delete_album(self, album_id: str) -> None:
        """``DELETE /albums/{id}``: the album goes, its images stay."""
        await self._json("DELETE", f"/albums/{album_id}")

    async def add_to_album(self, album_id: str, image_ids: Iterable[str]) -> dict[str, str]:
        """``PUT /albums/{id}/images``: each image's outcome (``ok``, ``image_not_found``...)."""
        body = await self._json(
            "PUT", f"/albums/{album_id}/images", json={"image_ids": list(image_ids)}
        )
        results: dict[str, str] = body["results"]
        return results

    async def remove_from_album(self, album_id: str, image_ids: Iterable[str]) -> dict[str, str]:
        """``DELETE /albums/{id}/images``: each image's outcome."""
        body = await self._json(
            "DELETE", f"/albums/{album_id}/images", json={"image_ids": list(image_ids)}
        )
        results: dict[str, str] = body["results"]
        return results

    async def create_share(
        self,
        *,
        image_ids: Iterable[str] = (),
        album_id: str | None = None,
        tag: str | None = None,
        ttl_seconds: int | None = None,
        expires_at: datetime | None = None,
        password: str | None = None,
        allow_download: bool = False,
        max_views: int | None = None,
        presets: Iterable[str] | None = None,
    ) -> ShareLink:
        """``POST /shares``: a link to images, an album or a tag; its ``url`` is shown once."""
        body: dict[str, Any] = {"allow_download": allow_download}
        ids = list(image_ids)
        if ids:
            body["image_ids"] = ids
        optional = {
            "album_id": album_id,
            "tag": tag,
            "ttl": ttl_seconds,
            "expires_at": None if expires_at is None else expires_at.isoformat(),
            "password": password,
            "max_views": max_views,
            "presets": None if presets is None else list(presets),
        }
        body.update({name: value for name, value in optional.items() if value is not None})
        return ShareLink.from_json(await self._json("POST", "/shares", json=body))

    async def shares(self) -> tuple[ShareLink, ...]:
        """``GET /shares``: the caller's links with their views, newest first."""
        body = await self._json("GET", "/shares")
        return tuple(ShareLink.from_json(item) for item in body["items"])

    async def revoke_share(self, share_id: str) -> None:
        """``DELETE /shares/{id}``: the link answers 410 at once, everywhere."""
        await self._json("DELETE", f"/shares/{share_id}")

    async def create_api_key(
        self, name: str, scopes: Iterable[str], *, expires_at: datetime | None = None
    ) -> ApiKey:
        """``POST /api-keys``: a key with these scopes; its ``key`` is shown this once."""
        body: dict[str, Any] = {"name": name, "scopes": list(scopes)}
        if expires_at is not None:
            body["expires_at"] = expires_at.isoformat()
        return ApiKey.from_json(await self._json("POST", "/api-keys", json=body))

    async def api_keys(self) -> tuple[ApiKey, ...]:
        """``GET /api-keys``: the caller's keys, newest first, without their secrets."""
        body = await self._json("GET", "/api-keys")
        return tuple(ApiKey.from_json(item) for item in body["items"])

    async def revoke_api_key(self, key_id: str) -> None:
        """``DELETE /api-keys/{id}``: refused at once here, everywhere within the bound."""
        await self._json("DELETE", f"/api-keys/{key_id}")
