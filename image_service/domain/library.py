"""An owner's library: reading an image (or waiting for it to settle), editing its details,
listing a page under a filter, and signing a download of its original or a variant."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from urllib.parse import quote

from image_service.domain import events
from image_service.domain.cursor import CursorCodec
from image_service.domain.errors import (
    Conflict,
    Forbidden,
    ImageNotFound,
    InvalidRequest,
)
from image_service.domain.events import ImageEvents
from image_service.domain.models import (
    MAX_TAGS,
    FocalPoint,
    ImagePage,
    ImageRecord,
    ImageStatus,
    Keep,
    ListFilter,
    PresignedDownload,
    Principal,
    TooManyTags,
    normalize_tags,
)
from image_service.domain.owners import owned, owner_for
from image_service.domain.policy import UploadPolicy
from image_service.domain.ports import (
    Clock,
    Listing,
    Objects,
    Records,
    utc_now,
)
from image_service.domain.watch import IN_FLIGHT, StatusWatcher
from image_service.imaging.formats import FILE_EXTENSIONS

_UNSAFE_FILENAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_FILENAME_STEM = 100


def content_disposition(
    record: ImageRecord, content_type: str | None = None, *, suffix: str | None = None
) -> str:
    """An attachment header with an ASCII-safe name whose extension matches the served type."""
    extension = FILE_EXTENSIONS[content_type or record.content_type]
    # Only the last path segment of whatever name the client gave: never a directory.
    original = (record.filename or "").replace("\\", "/").rsplit("/", 1)[-1] or record.image_id
    stem = original.rsplit(".", 1)[0] if "." in original else original
    if suffix:
        stem = f"{stem}-{suffix}"
    safe_stem = _UNSAFE_FILENAME_CHARS.sub("_", stem).strip("._")[:_MAX_FILENAME_STEM]
    ascii_name = (safe_stem or record.image_id) + extension
    utf8_name = quote(stem[:_MAX_FILENAME_STEM] + extension, safe="")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{utf8_name}"


class Library:
    def __init__(
        self,
        *,
        store: Objects,
        repository: Records,
        listing: Listing,
        cursors: CursorCodec,
        policy: UploadPolicy,
        events: ImageEvents,
        watcher: StatusWatcher | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._repository = repository
        self._listing = listing
        self._cursors = cursors
        self._policy = policy
        self._events = events
        self._watcher = watcher
        self._clock = clock

    def callback_secret(self, principal: Principal, user_id: str | None) -> str:
        """The key that signs the owner's callbacks, for them (or an admin) to verify with."""
        secret = self._events.callback_secret(owner_for(principal, user_id))
        if secret is None:
            raise Conflict(
                "This service sends no webhooks (IMAGE_SERVICE_WEBHOOK_SECRET is unset).",
                code="webhooks_not_configured",
            )
        return secret

    async def _owned(self, owner: str, image_id: str) -> ImageRecord:
        record = await self._repository.get(owner, image_id)
        if record is None:
            raise ImageNotFound(image_id)
        return record

    async def get(
        self,
        principal: Principal,
        image_id: str,
        user_id: str | None,
        *,
        wait_seconds: float | None = None,
    ) -> ImageRecord:
        """The image; with ``wait_seconds``, once it has left pending/processing, or as it is
        when that time has passed (``watch.py``: correct across replicas)."""
        owner = owner_for(principal, user_id)
        record = await owned(self._repository, owner, image_id)
        if wait_seconds is None or self._watcher is None or record.status not in IN_FLIGHT:
            return record
        settled = await self._watcher.wait(
            (owner, image_id), wait_seconds, holder=principal.user_id
        )
        return settled if settled is not None else await owned(self._repository, owner, image_id)

    async def update(
        self,
        principal: Principal,
        image_id: str,
        user_id: str | None,
        *,
        tags: Sequence[str] | None,
        description: str | None,
        focal: FocalPoint | Keep | None = Keep.KEEP,
    ) -> ImageRecord:
        owner = owner_for(principal, user_id)
        if tags is None and description is None and focal is Keep.KEEP:
            raise InvalidRequest(
                "Give tags, description and/or focal to change.", code="nothing_to_update"
            )
        owed = None
        if focal is not Keep.KEEP:
            # New rendition URLs (the edition changes): streams hear it, a CDN forgets the old.
            owed = self._events.owe(events.UPDATED, await owned(self._repository, owner, image_id))
        updated = await self._repository.update_details(
            owner,
            image_id,
            updated_at=self._clock(),
            tags=None if tags is None else normalize_tags(tags),
            description=description,
            focal=focal,
            owed=owed,
        )
        if updated is None:
            raise ImageNotFound(image_id)
        if owed is not None:
            await self._events.delivered(owed, updated)
        return updated

    async def retag(
        self,
        principal: Principal,
        image_id: str,
        user_id: str | None,
        *,
        add: Sequence[str] = (),
        remove: Sequence[str] = (),
    ) -> ImageRecord:
        """Adds and removes tags, keeping whatever else the image's tags are when the write
        lands (a concurrent edit's included): what a bulk tag or untag does to each image."""
        owner = owner_for(principal, user_id)
        try:
            updated = await self._repository.update_details(
                owner,
                image_id,
                updated_at=self._clock(),
                tags=None,
                description=None,
                add_tags=normalize_tags(add),
                remove_tags=normalize_tags(remove),
            )
        except TooManyTags as exc:
            raise InvalidRequest(
                f"An image has at most {MAX_TAGS} tags.",
                code="too_many_tags",
                details={"tags": exc.args[0]},
            ) from None
        if updated is None:
            raise ImageNotFound(image_id)
        return updated

    async def list(
        self,
        principal: Principal,
        user_id: str | None,
        filters: ListFilter,
        *,
        limit: int,
        cursor: str | None,
    ) -> ImagePage:
        owner = owner_for(principal, user_id)
        if filters.start and filters.end and filters.start > filters.end:
            raise InvalidRequest(
                "start_date must not be after end_date.", code="invalid_date_range"
            )
        if filters.taken_from and filters.taken_to and filters.taken_from > filters.taken_to:
            raise InvalidRequest(
                "taken_from must not be after taken_to.", code="invalid_date_range"
            )
        after = self._cursors.decode(owner, cursor) if cursor else None  # "" is no cursor
        filters = replace(filters, tags=tuple(normalize_tags(filters.tags)))
        records, next_position = await self._listing.list_page(owner, filters, limit, after)
        next_cursor = None if next_position is None else self._cursors.encode(owner, next_position)
        return ImagePage(items=records, next_cursor=next_cursor)

    async def download(
        self,
        principal: Principal,
        image_id: str,
        user_id: str | None,
        *,
        variant: str | None = None,
        variant_format: str = "jpeg",
    ) -> PresignedDownload:
        record = await owned(self._repository, owner_for(principal, user_id), image_id)
        if record.status is not ImageStatus.READY:
            raise Conflict(
                "Only a ready image can be downloaded.",
                code="image_not_ready",
                details={"status": record.status.value},
            )
        if variant is None and record.user_id != principal.user_id and self._may_locate(record):
            # An admin acting for the owner never sees where a photo was taken: not in the
            # metadata, and not in an original whose GPS the service keeps (any original but
            # a JPEG processed without IMAGE_SERVICE_KEEP_GPS). Variants carry no metadata.
            raise Forbidden(
                "This original may carry its owner's location: only its owner downloads it. "
                "Variants carry no metadata.",
                code="original_owner_only",
                details={"variants": sorted({v.name for v in record.variants})},
            )
        key, content_type, suffix = record.s3_key, record.content_type, None
        if variant is not None:
            chosen = next(
                (v for v in record.variants if v.name == variant and v.format == variant_format),
                None,
            )
            if chosen is None:
                raise ImageNotFound(image_id, variant=f"{variant}/{variant_format}")
            key, content_type, suffix = chosen.key, chosen.content_type, chosen.name
        expires_in = self._policy.download_url_expiry
        url = await self._store.presign_get(
            key,
            expires_in=expires_in,
            content_type=content_type,
            content_disposition=content_disposition(record, content_type, suffix=suffix),
        )
        return PresignedDownload(url=url, expires_at=self._clock() + timedelta(seconds=expires_in))

    def _may_locate(self, record: ImageRecord) -> bool:
        """Whether the stored original may still hold a GPS position."""
        return self._policy.keep_gps or record.content_type != "image/jpeg"
