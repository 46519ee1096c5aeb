"""The records the domain works with; plain data, no I/O."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from image_service.imaging.exif import PhotoMetadata

# S3's own bounds: a part (but the last) is 5 MiB-5 GiB; CopyObject, which completion uses to
# move a verified upload under its served key, takes at most 5 GiB in one call.
MIN_PART_BYTES = 5 * 1024 * 1024
MAX_PART_BYTES = 5 * 1024**3
MAX_COPY_BYTES = 5 * 1024**3

# What an image's owner may write about it. Twenty tags also keep an image's transaction (the
# image, a copy per tag, the copies of removed tags, the usage) under DynamoDB's 100 writes.
MAX_TAGS = 20
MAX_TAG_LENGTH = 64
MAX_DESCRIPTION_LENGTH = 2000


class ImageStatus(enum.StrEnum):
    FETCHING = "fetching"  # imported by URL: a worker is fetching the bytes (then pending)
    PENDING = "pending"  # upload URL issued, bytes not yet verified
    PROCESSING = "processing"  # verified; scans and variants under way, not yet downloadable
    READY = "ready"  # scanned, processed and downloadable
    REJECTED = "rejected"  # what arrived was refused and deleted
    QUARANTINED = "quarantined"  # a scanner flagged it; moved aside, never downloadable
    DELETING = "deleting"  # a delete began; a retried DELETE finishes it
    TRASHED = "trashed"  # deleted into the trash: not served, restorable until purged


@dataclass(frozen=True, slots=True)
class Variant:
    name: str  # "thumb", "medium", ...
    format: str  # "jpeg" | "webp"
    content_type: str
    key: str
    width: int
    height: int
    size: int


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller."""

    user_id: str
    is_admin: bool = False
    # When the credential that authenticated the caller expires (Unix seconds); None: never.
    # What a request holds open (an event stream) ends then.
    expires_at: float | None = None
    # An API key's scopes (domain/apikeys.py); None: a user token, with every right.
    scopes: frozenset[str] | None = None
    key_id: str | None = None


@dataclass(frozen=True, slots=True)
class FocalPoint:
    """Where the subject is, as fractions of the (oriented) width and height from the top
    left: what a ``cover`` rendition keeps when it must crop."""

    x: float
    y: float


class Keep(enum.Enum):
    """An edit's "leave it as it is", where None already means "clear it"."""

    KEEP = "keep"


@dataclass(slots=True)
class ImageRecord:
    user_id: str
    image_id: str
    s3_key: str
    content_type: str
    status: ImageStatus
    upload_time: datetime
    updated_at: datetime
    tags: list[str] = field(default_factory=list)
    description: str = ""
    filename: str | None = None
    # Where this upload's events are also POSTed (a webhook of its own), if the client asked.
    callback_url: str | None = None
    # Imported by URL (POST /images/import): where its bytes were fetched from.
    source_url: str | None = None
    # What the client declared when it asked for the URL; checked at completion.
    declared_size: int | None = None
    declared_checksum_sha256: str | None = None
    # A multipart upload's S3 upload id, part size and (when declared) each part's base64
    # SHA-256, signed into its part URL; cleared once the parts are assembled.
    upload_id: str | None = None
    part_size: int | None = None
    part_checksums: list[str] = field(default_factory=list)
    # Bytes this image counts against its owner's quota (set once completion accepted it).
    counted_bytes: int | None = None
    # What completion measured.
    size: int | None = None
    width: int | None = None
    height: int | None = None
    sha256: str | None = None
    # Hex SHA-256 of the bytes as uploaded (sha256 changes if processing strips GPS): what a
    # client's own hash of its file matches, for de-duplication.
    uploaded_sha256: str | None = None
    rejection_reason: str | None = None
    variants: list[Variant] = field(default_factory=list)
    photo: PhotoMetadata | None = None  # from its EXIF, once processed
    placeholder: str | None = None  # dominant colour, "#rrggbb"
    thumbhash: str | None = None  # base64 ThumbHash: a blurred preview
    # The processing this image's variants and metadata came from (ProcessingPolicy's
    # fingerprint): `image-service reprocess` brings images whose processing changed up to date.
    processed_with: str | None = None
    # In the trash: since when, and the status a restore gives back.
    trashed_at: datetime | None = None
    trashed_from: ImageStatus | None = None
    # The owner's albums it is in (domain/albums.py): each has a membership item, written and
    # removed with this record, so a purged image leaves them in the same transaction.
    albums: list[str] = field(default_factory=list)
    # The owner's focal point (PATCH focal): cover renditions crop around it.
    focal: FocalPoint | None = None
    # Bumped by every stored change; each write is conditional on the revision its writer read.
    revision: int = 0


@dataclass(frozen=True, slots=True)
class Usage:
    images: int
    bytes: int


@dataclass(frozen=True, slots=True)
class ListFilter:
    tags: tuple[str, ...] = ()
    start: datetime | None = None  # inclusive
    end: datetime | None = None  # inclusive
    status: ImageStatus | None = None  # TRASHED: the trash, newest trashed first
    # Taken (EXIF) between these, inclusive; either one, or by_taken, orders the page by it.
    taken_from: datetime | None = None
    taken_to: datetime | None = None
    by_taken: bool = False

    @property
    def ordered_by_taken(self) -> bool:
        return self.by_taken or self.taken_from is not None or self.taken_to is not None


@dataclass(frozen=True, slots=True)
class PartUpload:
    """One part of a multipart upload: where to PUT it, with exactly these headers."""

    part_number: int
    size: int
    url: str
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class UploadedPart:
    """A part S3 holds."""

    part_number: int
    size: int
    etag: str
    checksum_sha256: str | None


@dataclass(frozen=True, slots=True)
class PresignedUpload:
    url: str  # "" for a multipart upload: its parts have a URL each
    method: str  # PUT, POST or MULTIPART
    headers: dict[str, str]
    fields: dict[str, str]
    expires_at: datetime
    upload_id: str | None = None
    part_size: int | None = None
    parts: tuple[PartUpload, ...] = ()


@dataclass(frozen=True, slots=True)
class MultipartProgress:
    """Where a multipart upload stands: the parts S3 holds, and fresh URLs for the others."""

    upload_id: str
    size: int
    part_size: int
    uploaded: tuple[UploadedPart, ...]
    missing: tuple[PartUpload, ...]
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class OwnedDigest:
    """A SHA-256 the caller asked about, and the image of theirs with those bytes (or None)."""

    checksum: str  # as the caller wrote it
    image_id: str | None


@dataclass(frozen=True, slots=True)
class PresignedDownload:
    url: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class ImagePage:
    items: list[ImageRecord]
    next_cursor: str | None


def format_timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with fixed-width microseconds, so text order is time order."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class IdempotentUpload:
    """What a keyed upload-URL request answered, to answer its retries the same."""

    fingerprint: str  # of the request body: the same key with another body is refused
    owner: str
    image_id: str
    upload: PresignedUpload


@dataclass(frozen=True, slots=True)
class LegacyImage:
    """An image item the original service wrote: the keys, the object and the owner's words,
    with no status, revision or index attributes. Its tags may be a list, a string set or one
    comma-separated string, and its upload time naive (UTC) or missing, depending on who wrote
    it; they are read as all of those."""

    user_id: str
    image_id: str
    s3_key: str
    content_type: str
    upload_time: datetime | None
    tags: list[str]
    description: str


def normalize_tags(tags: Sequence[str]) -> list[str]:
    """Lowercase, first occurrence kept: ``["Cat", "cat", "Dog"]`` is ``["cat", "dog"]``."""
    return list(dict.fromkeys(tag.lower() for tag in tags))


def edited_tags(tags: Sequence[str], add: Sequence[str], remove: Sequence[str]) -> list[str]:
    """``tags`` with ``add`` appended and ``remove`` taken out, each kept once (normalized);
    at most ``MAX_TAGS``, else :class:`TooManyTags`."""
    if not add and not remove:
        return list(tags)
    gone = set(normalize_tags(remove))
    edited = [tag for tag in normalize_tags([*tags, *add]) if tag not in gone]
    if len(edited) > MAX_TAGS:
        raise TooManyTags(len(edited))
    return edited


class TooManyTags(ValueError):
    """An edit that would leave an image with more than ``MAX_TAGS`` tags."""
