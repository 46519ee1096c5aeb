"""Albums: a named set of one owner's images, newest upload first.

An album is an item beside its owner's images; each image in it has a membership item, written
and removed in the same transaction as the image's record (which lists its albums), so:

- a purged image leaves every album in the transaction that deletes it;
- a trashed (or quarantined, or deleting) image stays a member but is left out of the album's
  pages while it is not ready, and is back when it is restored;
- deleting an album leaves its images where they were.

Listing an album reads one page of members per page (one query, one batch read of their
records), as every listing here does. An owner holds at most ``MAX_ALBUMS_PER_USER`` albums, an
image is in at most ``MAX_ALBUMS_PER_IMAGE``, and one call adds or removes at most
``MAX_IMAGES_PER_CALL`` images, with a result for each.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from image_service.domain.bounded import bounded_gather
from image_service.domain.cursor import CursorCodec, CursorPosition
from image_service.domain.errors import AlbumGone, AlbumNotFound, Conflict, InvalidRequest
from image_service.domain.models import ImageRecord, ImageStatus, Principal
from image_service.domain.owners import owner_for
from image_service.domain.ports import Clock

MAX_ALBUMS_PER_USER = 1000
MAX_ALBUMS_PER_IMAGE = 25
MAX_IMAGES_PER_CALL = 100
MAX_NAME_LENGTH = 200


@dataclass(frozen=True, slots=True)
class Album:
    album_id: str
    owner: str
    name: str
    description: str
    cover: str | None  # an image id of the owner's; shown while that image is ready
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class AlbumPage:
    album: Album
    cover: ImageRecord | None
    images: list[ImageRecord]
    next_cursor: str | None


class AlbumStore(Protocol):
    async def create_album(self, album: Album, *, max_albums: int) -> bool: ...

    async def album(self, owner: str, album_id: str) -> Album | None: ...

    async def owner_albums(self, owner: str) -> list[Album]: ...

    async def replace_album(self, album: Album) -> bool: ...

    async def delete_album(self, owner: str, album_id: str) -> bool: ...

    async def album_members(
        self, owner: str, album_id: str, limit: int, after: str | None
    ) -> tuple[list[str], str | None]: ...


class AlbumImages(Protocol):
    """What albums need of the image records."""

    async def get(self, user_id: str, image_id: str) -> ImageRecord | None: ...

    async def get_many(self, keys: Sequence[tuple[str, str]]) -> list[ImageRecord]: ...

    async def add_to_album(
        self, record: ImageRecord, album_id: str, *, max_albums: int
    ) -> ImageRecord | None: ...

    async def remove_from_album(self, record: ImageRecord, album_id: str) -> bool: ...


# A member's outcome in a call that adds or removes several.
OK = "ok"
IMAGE_NOT_FOUND = "image_not_found"
ALREADY_IN_ALBUM = "already_in_album"
NOT_IN_ALBUM = "not_in_album"
TOO_MANY_ALBUMS = "too_many_albums"


class Albums:
    def __init__(
        self, store: AlbumStore, images: AlbumImages, *, cursors: CursorCodec, clock: Clock
    ) -> None:
        self._store = store
        self._images = images
        self._cursors = cursors
        self._clock = clock

    async def create(
        self,
        principal: Principal,
        user_id: str | None,
        *,
        name: str,
        description: str,
        cover: str | None,
    ) -> Album:
        owner = owner_for(principal, user_id)
        now = self._clock()
        if cover is not None:
            await self._own_image(owner, cover)
        album = Album(uuid.uuid4().hex, owner, name, description, cover, now, now)
        if not await self._store.create_album(album, max_albums=MAX_ALBUMS_PER_USER):
            raise Conflict(
                f"An owner has at most {MAX_ALBUMS_PER_USER} albums.",
                code="too_many_albums",
                details={"max_albums": MAX_ALBUMS_PER_USER},
            )
        return album

    async def of_owner(self, principal: Principal, user_id: str | None) -> list[Album]:
        owner = owner_for(principal, user_id)
        albums = await self._store.owner_albums(owner)
        return sorted(albums, key=lambda album: (album.created_at, album.album_id), reverse=True)

    async def page(
        self,
        principal: Principal,
        album_id: str,
        user_id: str | None,
        *,
        limit: int,
        cursor: str | None,
    ) -> AlbumPage:
        """The album and a page of its ready images, newest upload first."""
        owner = owner_for(principal, user_id)
        album = await self._album(owner, album_id)
        shown, next_cursor = await self.owner_page(owner, album_id, limit=limit, cursor=cursor)
        cover = None
        if album.cover is not None:
            found = await self._images.get_many([(owner, album.cover)])
            if found and found[0].status is ImageStatus.READY:
                cover = found[0]
        return AlbumPage(album, cover, shown, next_cursor)

    async def owner_page(
        self, owner: str, album_id: str, *, limit: int, cursor: str | None
    ) -> tuple[list[ImageRecord], str | None]:
        """A page of an owner's album's ready images (what its share links show too): one
        query of its members, one batch read of their records."""
        after = self._cursors.decode(owner, cursor).sort_key if cursor else None
        members, last = await self._store.album_members(owner, album_id, limit, after)
        found = {
            record.image_id: record
            for record in await self._images.get_many([(owner, image_id) for image_id in members])
        }
        shown = [
            found[image_id]
            for image_id in members
            if image_id in found and found[image_id].status is ImageStatus.READY
        ]
        next_cursor = (
            None if last is None else self._cursors.encode(owner, CursorPosition(last, last))
        )
        return shown, next_cursor

    async def update(
        self,
        principal: Principal,
        album_id: str,
        user_id: str | None,
        *,
        name: str | None = None,
        description: str | None = None,
        cover: str | None = None,
        clear_cover: bool = False,
    ) -> Album:
        owner = owner_for(principal, user_id)
        album = await self._album(owner, album_id)
        if cover is not None:
            await self._own_image(owner, cover)
        changed = replace(
            album,
            name=album.name if name is None else name,
            description=album.description if description is None else description,
            cover=None if clear_cover else (album.cover if cover is None else cover),
            updated_at=self._clock(),
        )
        if not await self._store.replace_album(changed):
            raise AlbumNotFound(album_id)
        return changed

    async def delete(self, principal: Principal, album_id: str, user_id: str | None) -> None:
        """Deletes the album (at once: it is gone from every view), then takes its images out
        of it; the images stay."""
        owner = owner_for(principal, user_id)
        if not await self._store.delete_album(owner, album_id):
            raise AlbumNotFound(album_id)
        after = None
        while True:
            members, after = await self._store.album_members(
                owner, album_id, MAX_IMAGES_PER_CALL, after
            )
            records = await self._images.get_many([(owner, image_id) for image_id in members])
            await bounded_gather(
                records, lambda record: self._images.remove_from_album(record, album_id)
            )
            if after is None:
                return

    async def add(
        self, principal: Principal, album_id: str, user_id: str | None, image_ids: Sequence[str]
    ) -> dict[str, str]:
        """Puts each image in the album; its outcome, by image id."""
        owner = owner_for(principal, user_id)
        await self._album(owner, album_id)
        records = await self._records(owner, image_ids)

        async def add_one(image_id: str) -> str:
            record = records.get(image_id)
            if record is None or record.status is ImageStatus.DELETING:
                return IMAGE_NOT_FOUND
            if album_id in record.albums:
                return ALREADY_IN_ALBUM
            if len(record.albums) >= MAX_ALBUMS_PER_IMAGE:
                return TOO_MANY_ALBUMS
            try:
                added = await self._images.add_to_album(
                    record, album_id, max_albums=MAX_ALBUMS_PER_IMAGE
                )
            except AlbumGone:
                raise AlbumNotFound(album_id) from None
            if added is not None:
                return OK
            current = await self._images.get(owner, image_id)  # it changed meanwhile
            if current is None:
                return IMAGE_NOT_FOUND
            return ALREADY_IN_ALBUM if album_id in current.albums else TOO_MANY_ALBUMS

        return await _outcomes(_unique(image_ids), add_one)

    async def remove(
        self, principal: Principal, album_id: str, user_id: str | None, image_ids: Sequence[str]
    ) -> dict[str, str]:
        """Takes each image out of the album; its outcome, by image id."""
        owner = owner_for(principal, user_id)
        await self._album(owner, album_id)
        records = await self._records(owner, image_ids)

        async def remove_one(image_id: str) -> str:
            record = records.get(image_id)
            if record is None:
                return IMAGE_NOT_FOUND
            if album_id not in record.albums:
                return NOT_IN_ALBUM
            return OK if await self._images.remove_from_album(record, album_id) else NOT_IN_ALBUM

        return await _outcomes(_unique(image_ids), remove_one)

    async def _album(self, owner: str, album_id: str) -> Album:
        album = await self._store.album(owner, album_id)
        if album is None:
            raise AlbumNotFound(album_id)
        return album

    async def _own_image(self, owner: str, image_id: str) -> None:
        if await self._images.get(owner, image_id) is None:
            raise InvalidRequest(
                "The cover must be one of the owner's images.",
                code="invalid_cover",
                details={"cover": image_id},
            )

    async def _records(self, owner: str, image_ids: Sequence[str]) -> dict[str, ImageRecord]:
        if len(image_ids) > MAX_IMAGES_PER_CALL:
            raise InvalidRequest(
                f"At most {MAX_IMAGES_PER_CALL} images per call.", code="too_many_images"
            )
        found = await self._images.get_many([(owner, image_id) for image_id in set(image_ids)])
        return {record.image_id: record for record in found}


def _unique(image_ids: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(image_ids))


async def _outcomes(image_ids: list[str], one: Callable[[str], Awaitable[str]]) -> dict[str, str]:
    """Each image's outcome of ``one``, by image id."""
    return dict(zip(image_ids, await bounded_gather(image_ids, one), strict=True))
