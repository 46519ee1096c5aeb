"""What the client's calls answer and raise: the service's images, pages and upload tickets as
typed values, and its errors."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

PROCESSING_STATUSES = frozenset({"fetching", "pending", "processing"})

Progress = Callable[[int, int], None]
"""Called with (bytes sent so far, total bytes) while an upload is written to S3."""


class ImageServiceError(Exception):
    """Base of everything this client raises for an answer it did not want."""


class ApiError(ImageServiceError):
    """The service answered with its JSON error envelope (or, failing that, a bare status)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        *,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = dict(details or {})
        self.request_id = request_id
        self.retry_after = retry_after


class StorageError(ImageServiceError):
    """S3 refused an upload or a download (expired URL, wrong length, second upload...)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"S3 answered {status}: {body[:300]}")
        self.status = status
        self.body = body


class ProcessingTimeout(ImageServiceError):
    """The image was still pending or processing when the wait ended."""


@dataclass(frozen=True, slots=True)
class UploadTicket:
    """Where and how to send one image's bytes; valid until ``expires_at``."""

    image_id: str
    upload_url: str
    method: str  # "PUT" or "POST"
    headers: dict[str, str]
    fields: dict[str, str]
    expires_at: datetime

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> UploadTicket:
        return cls(
            image_id=body["image_id"],
            upload_url=body["upload_url"],
            method=body["method"],
            headers=dict(body.get("headers") or {}),
            fields=dict(body.get("fields") or {}),
            expires_at=_timestamp(body["expires_at"]),
        )


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    format: str
    content_type: str
    width: int
    height: int
    size: int


@dataclass(frozen=True, slots=True)
class Position:
    latitude: float
    longitude: float
    altitude: float | None = None


@dataclass(frozen=True, slots=True)
class Photo:
    """What the photo's EXIF says (each field when known); ``gps`` only for its owner, and
    only where the service keeps it."""

    taken_at: datetime | None = None
    camera: str | None = None
    lens: str | None = None
    f_number: float | None = None
    exposure_time: float | None = None
    iso: int | None = None
    focal_length: float | None = None
    orientation: int | None = None
    gps: Position | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Photo:
        taken, gps = body.get("taken_at"), body.get("gps")
        return cls(
            taken_at=None if taken is None else _timestamp(taken),
            camera=body.get("camera"),
            lens=body.get("lens"),
            f_number=body.get("f_number"),
            exposure_time=body.get("exposure_time"),
            iso=body.get("iso"),
            focal_length=body.get("focal_length"),
            orientation=body.get("orientation"),
            gps=None if gps is None else Position(**gps),
        )


@dataclass(frozen=True, slots=True)
class Image:
    image_id: str
    user_id: str
    status: str
    content_type: str
    tags: tuple[str, ...]
    description: str
    upload_time: datetime
    updated_at: datetime
    variants: tuple[Variant, ...] = ()
    size: int | None = None
    width: int | None = None
    height: int | None = None
    sha256: str | None = None
    filename: str | None = None
    placeholder: str | None = None
    thumbhash: str | None = None  # a blurred preview, base64 ThumbHash
    photo: Photo | None = None
    # Where a cover rendition crops, as fractions of the width and height: (x, y).
    focal: tuple[float, float] | None = None
    # Why it was rejected or quarantined.
    reason: str | None = None
    # Imported by URL: where from.
    source_url: str | None = None
    # An upload with skip_existing answered this image, already there, instead of sending.
    existing: bool = False

    @property
    def processed(self) -> bool:
        return self.status not in PROCESSING_STATUSES

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Image:
        return cls(
            image_id=body["image_id"],
            user_id=body["user_id"],
            status=body["status"],
            content_type=body["content_type"],
            tags=tuple(body.get("tags") or ()),
            description=body.get("description") or "",
            upload_time=_timestamp(body["upload_time"]),
            updated_at=_timestamp(body["updated_at"]),
            variants=tuple(
                Variant(
                    name=v["name"],
                    format=v["format"],
                    content_type=v["content_type"],
                    width=v["width"],
                    height=v["height"],
                    size=v["size"],
                )
                for v in body.get("variants") or ()
            ),
            size=body.get("size"),
            width=body.get("width"),
            height=body.get("height"),
            sha256=body.get("sha256"),
            filename=body.get("filename"),
            placeholder=body.get("placeholder"),
            thumbhash=body.get("thumbhash"),
            photo=None if body.get("photo") is None else Photo.from_json(body["photo"]),
            focal=None if body.get("focal") is None else (body["focal"]["x"], body["focal"]["y"]),
            reason=body.get("reason"),
            source_url=body.get("source_url"),
        )


@dataclass(frozen=True, slots=True)
class Page:
    items: tuple[Image, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Album:
    album_id: str
    name: str
    description: str
    cover: str | None
    created_at: datetime
    updated_at: datetime
    # GET /albums/{id} only: a page of its ready images, the cover's image, the next page.
    images: tuple[Image, ...] = ()
    cover_image: Image | None = None
    next_cursor: str | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Album:
        cover_image = body.get("cover_image")
        return cls(
            album_id=body["album_id"],
            name=body["name"],
            description=body["description"],
            cover=body.get("cover"),
            created_at=_timestamp(body["created_at"]),
            updated_at=_timestamp(body["updated_at"]),
            images=tuple(Image.from_json(item) for item in body.get("images", ())),
            cover_image=None if cover_image is None else Image.from_json(cover_image),
            next_cursor=body.get("next_cursor"),
        )


@dataclass(frozen=True, slots=True)
class ShareLink:
    """One of the caller's share links; ``url`` only in the answer that made it."""

    share_id: str
    image_ids: tuple[str, ...]
    album_id: str | None
    tag: str | None
    created_at: datetime
    expires_at: datetime
    allow_download: bool
    presets: tuple[str, ...]
    max_views: int | None
    views: int
    has_password: bool
    url: str | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ShareLink:
        target = body["target"]
        return cls(
            share_id=body["share_id"],
            image_ids=tuple(target.get("image_ids") or ()),
            album_id=target.get("album_id"),
            tag=target.get("tag"),
            created_at=_timestamp(body["created_at"]),
            expires_at=_timestamp(body["expires_at"]),
            allow_download=body["allow_download"],
            presets=tuple(body["presets"]),
            max_views=body.get("max_views"),
            views=body["views"],
            has_password=body["has_password"],
            url=body.get("url"),
        )


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One of the caller's API keys; ``key`` (``isk_…``) only in the answer that made it."""

    key_id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    key: str | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ApiKey:
        def moment(name: str) -> datetime | None:
            value = body.get(name)
            return None if value is None else _timestamp(value)

        created = moment("created_at")
        assert created is not None
        return cls(
            key_id=body["key_id"],
            name=body["name"],
            scopes=tuple(body["scopes"]),
            created_at=created,
            expires_at=moment("expires_at"),
            last_used_at=moment("last_used_at"),
            key=body.get("key"),
        )


def _timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text)


@dataclass(frozen=True, slots=True)
class BatchResult:
    """A bulk operation's answer: done within the call (``results``: each image's ``ok`` or
    error code), or a job (``job``) whose progress :meth:`wait_for_job` follows."""

    results: tuple[tuple[str, str], ...] = ()
    job: Job | None = None

    @property
    def failed(self) -> tuple[tuple[str, str], ...]:
        return tuple(result for result in self.results if result[1] != "ok")


@dataclass(frozen=True, slots=True)
class Job:
    job_id: str
    op: str
    state: str  # queued | running | done
    total: int | None
    processed: int
    succeeded: int
    failed: int
    errors: tuple[tuple[str, str], ...]

    @property
    def done(self) -> bool:
        return self.state == "done"

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Job:
        return cls(
            job_id=body["job_id"],
            op=body["op"],
            state=body["state"],
            total=body.get("total"),
            processed=body["processed"],
            succeeded=body["succeeded"],
            failed=body["failed"],
            errors=tuple((e["image_id"], e["result"]) for e in body.get("errors") or ()),
        )
