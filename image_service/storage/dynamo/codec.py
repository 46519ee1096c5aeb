"""The item codec of image metadata in DynamoDB: keys, index attributes, items and back.

Table: partition key ``user_id``, sort key ``image_id`` (the original service's model). Every
listing is a query on one of three global secondary indexes, all sorted by upload time then image
id, so a page reads what it returns whatever the user owns (``docs/data-model.md``):

- ``by_upload_time`` (``user_id``): newest first, date ranges;
- ``by_status`` (``status_key`` = owner and status): one status;
- ``by_tag`` (``tag_key`` = owner and tag): one tag. An image has many tags and an index key has
  one value, so each tag gets a *tag copy* of the image item (sort key ``<image id>#tag#<tag>``),
  written in the same transaction as the image, which is the only way the copies change. Copies
  exist from completion on: a pending upload is listed by time and status, not by tag.

A fourth, sparse index, ``by_attention`` (``attention_key`` = a kind and a shard, sorted by
time), holds only what someone must come back to: images between two steps (processing,
deleting, trashed), for the sweeper; the *outbox*, the jobs each change owes, written in the
change's own transaction (``kept#<shard>``, sort key ``job#<id>``) until the queue has them,
for the relay; and the *feed*, one entry per change every replica's event streams hear
(``feed#<shard>``, sort key ``feed#<time>#<id>``, expiring after an hour).

Writes are optimistic: each is conditional on the ``revision`` its writer read and re-applied on
a fresh read when another writer got there first, so the copies never drift from their image.
"""

from __future__ import annotations

import zlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from image_service.domain.models import (
    FocalPoint,
    ImageRecord,
    ImageStatus,
    LegacyImage,
    Variant,
    format_timestamp,
    parse_timestamp,
)
from image_service.imaging.exif import GpsPosition, PhotoMetadata

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.type_defs import AttributeValueTypeDef

BACKEND = "dynamodb"
UPLOAD_TIME_INDEX = "by_upload_time"
STATUS_INDEX = "by_status"
TAG_INDEX = "by_tag"
ATTENTION_INDEX = "by_attention"
TAKEN_INDEX = "by_taken"
TRASH_INDEX = "by_trash"
# (index, partition key attribute, sort key attribute)
INDEXES = (
    (UPLOAD_TIME_INDEX, "user_id", "upload_sort"),
    (STATUS_INDEX, "status_key", "upload_sort"),
    (TAG_INDEX, "tag_key", "tag_sort"),
    (ATTENTION_INDEX, "attention_key", "attention_sort"),
    (TAKEN_INDEX, "user_id", "taken_sort"),
    (TRASH_INDEX, "trash_key", "trash_sort"),
)
_TAG_COPY_MARK = "#tag#"
# Attributes only the image item has: a tag copy carrying them would show up in those indexes.
_IMAGE_ONLY = (
    "albums",
    "upload_sort",
    "status_key",
    "attention_key",
    "attention_sort",
    "taken_sort",
    "trash_key",
    "trash_sort",
)
# Images in these statuses are between two steps and are finished by the sweeper if the step
# that should have followed never came (a lost job, a delete cut short). The attention index is
# sparse: it holds only them, over this many partitions per status, so that the sweeper's
# queries spread over DynamoDB partitions instead of all hitting one.
NEEDS_ATTENTION = frozenset(
    {ImageStatus.FETCHING, ImageStatus.PROCESSING, ImageStatus.DELETING, ImageStatus.TRASHED}
)
ATTENTION_SHARDS = 8

Item = dict[str, "AttributeValueTypeDef"]

# The item holding one owner's usage (images and bytes kept), beside their images.
USAGE_ID = "usage#totals"
# Digest items: one per SHA-256 an owner's images have, holding the set of those images' ids
# (string set attribute ``DIGEST_IMAGES``), changed in the same transaction as each image, so a
# batch of digests is answered by key reads (``BatchGetItem``), never by a scan or a query each.
_DIGEST_MARK = "sha256#"
DIGEST_IMAGES = "image_ids"
# Outbox items (``owed_job_item``): sort key ``job#<id>``, the job's JSON in ``KEPT_JOB``.
KEPT_JOB_MARK = "job#"
KEPT_JOB = "job"
KEPT_JOBS = "kept"  # their kind in the attention index
# Feed items (``feed_item``): the change's event type, origin, and the image as it left it.
FEED_MARK = "feed#"
FEED = "feed"  # their kind in the attention index
FEED_EVENT = "event_type"
FEED_ORIGIN = "origin"
FEED_RECORD = "record"
# How long a feed entry is kept (DynamoDB TTL): far longer than any reader lags.
FEED_SECONDS = 3600
# An image owns its bytes (for de-duplication) once verified and until it leaves for good.
_OWNS_ITS_BYTES = frozenset({ImageStatus.PROCESSING, ImageStatus.READY})


def trash_sort_key(record: ImageRecord) -> str:
    moment = record.trashed_at or record.updated_at
    return f"{format_timestamp(moment)}#{record.image_id}"


def upload_sort_key(record: ImageRecord) -> str:
    return f"{format_timestamp(record.upload_time)}#{record.image_id}"


def taken_sort_key(record: ImageRecord) -> str | None:
    """Where an image sorts by when it was taken (``by_taken``, sparse: only images whose
    EXIF says when)."""
    if record.photo is None or record.photo.taken_at is None:
        return None
    return f"{format_timestamp(record.photo.taken_at)}#{record.image_id}"


def _owner_part(user_id: str) -> str:
    # Percent-encoded, so the first "#" of an index key ends the owner whatever follows.
    return quote(user_id, safe="")


def status_key(user_id: str, status: ImageStatus) -> str:
    return f"{_owner_part(user_id)}#{status.value}"


def tag_key(user_id: str, tag: str) -> str:
    return f"{_owner_part(user_id)}#{tag}"


def tag_copy_id(image_id: str, tag: str) -> str:
    return f"{image_id}{_TAG_COPY_MARK}{tag}"


def digest_id(hex_digest: str) -> str:
    return f"{_DIGEST_MARK}{hex_digest}"


def indexed_digest(record: ImageRecord) -> str | None:
    """The uploaded bytes' SHA-256 an image is found by in its owner's digest items, if any."""
    return record.uploaded_sha256 if record.status in _OWNS_ITS_BYTES else None


def attention_key(record: ImageRecord) -> str:
    return _attention_key(record.status.value, record.user_id, record.image_id)


def attention_keys(kind: str) -> list[str]:
    """Every shard's partition of one kind in the attention index: a status's value, or
    ``KEPT_JOBS``."""
    return [_sharded(kind, shard) for shard in range(ATTENTION_SHARDS)]


def _attention_key(kind: str, user_id: str, item_id: str) -> str:
    return _sharded(kind, zlib.crc32(f"{user_id}/{item_id}".encode()) % ATTENTION_SHARDS)


def _sharded(kind: str, shard: int) -> str:
    return f"{kind}#{shard}"


def kept_job_item(user_id: str, job_id: str, job: str, *, kept_at: datetime) -> Item:
    """A job a change owes (its JSON), kept in its owner's partition until the queue has it:
    in the attention index under ``kept#<shard>`` for the relay, and in no listing."""
    item_id = f"{KEPT_JOB_MARK}{job_id}"
    return {
        **item_key(user_id, item_id),
        KEPT_JOB: string_value(job),
        "attention_key": string_value(_attention_key(KEPT_JOBS, user_id, item_id)),
        "attention_sort": string_value(format_timestamp(kept_at)),
    }


def kept_job_key(user_id: str, job_id: str) -> Item:
    return item_key(user_id, f"{KEPT_JOB_MARK}{job_id}")


def feed_item(
    event_type: str, record: ImageRecord, *, at: datetime, origin: str, entry_id: str
) -> Item:
    """A change, for every replica's event streams: the image as the change left it, in its
    owner's partition (in no listing) and in the attention index under ``feed#<shard>``,
    sorted by when it was made; DynamoDB removes it after ``FEED_SECONDS``."""
    moment = format_timestamp(at)
    image = to_item(record)
    for name in (*_IMAGE_ONLY, EXPIRY_ATTRIBUTE):  # an image's index keys mean nothing here
        image.pop(name, None)
    return {
        **item_key(record.user_id, f"{FEED_MARK}{moment}#{entry_id}"),
        FEED_EVENT: string_value(event_type),
        FEED_ORIGIN: string_value(origin),
        FEED_RECORD: {"M": image},
        "attention_key": string_value(
            _sharded(FEED, zlib.crc32(entry_id.encode()) % ATTENTION_SHARDS)
        ),
        "attention_sort": string_value(f"{moment}#{entry_id}"),
        EXPIRY_ATTRIBUTE: number_value(int(at.timestamp()) + FEED_SECONDS),
    }


def string_value(value: str) -> AttributeValueTypeDef:
    return {"S": value}


def number_value(value: int) -> AttributeValueTypeDef:
    return {"N": str(value)}


# Records of uploads that never became images expire (DynamoDB TTL) after this attribute's time.
EXPIRY_ATTRIBUTE = "expires_at"
_EXPIRING = {ImageStatus.PENDING, ImageStatus.REJECTED}


def to_item(record: ImageRecord, *, dead_record_ttl: int | None = None) -> Item:
    item: Item = {
        "user_id": string_value(record.user_id),
        "image_id": string_value(record.image_id),
        "s3_key": string_value(record.s3_key),
        "content_type": string_value(record.content_type),
        "status": string_value(record.status.value),
        "upload_time": string_value(format_timestamp(record.upload_time)),
        "revision": number_value(record.revision),
        "updated_at": string_value(format_timestamp(record.updated_at)),
        "tags": {"L": [string_value(tag) for tag in record.tags]},
        "description": string_value(record.description),
    }
    optional_strings = {
        "filename": record.filename,
        "callback_url": record.callback_url,
        "source_url": record.source_url,
        "declared_checksum_sha256": record.declared_checksum_sha256,
        "upload_id": record.upload_id,
        "sha256": record.sha256,
        "uploaded_sha256": record.uploaded_sha256,
        "rejection_reason": record.rejection_reason,
    }
    optional_numbers = {
        "counted_bytes": record.counted_bytes,
        "declared_size": record.declared_size,
        "part_size": record.part_size,
        "size": record.size,
        "width": record.width,
        "height": record.height,
    }
    item.update(
        {name: string_value(value) for name, value in optional_strings.items() if value is not None}
    )
    if record.variants:
        item["variants"] = {"L": [{"M": _variant_item(variant)} for variant in record.variants]}
    if record.part_checksums:
        item["part_checksums"] = {"L": [string_value(c) for c in record.part_checksums]}
    if record.status is ImageStatus.TRASHED:
        # Out of every listing but the trash's (the listing indexes are sparse on these).
        item["trash_key"] = string_value(record.user_id)
        item["trash_sort"] = string_value(trash_sort_key(record))
    else:
        item["upload_sort"] = string_value(upload_sort_key(record))
        item["status_key"] = string_value(status_key(record.user_id, record.status))
    if record.trashed_at is not None:
        item["trashed_at"] = string_value(format_timestamp(record.trashed_at))
    if record.trashed_from is not None:
        item["trashed_from"] = string_value(record.trashed_from.value)
    if record.photo is not None:
        item["photo"] = {"M": _photo_item(record.photo)}
        taken_sort = taken_sort_key(record)
        if taken_sort is not None and record.status is not ImageStatus.TRASHED:
            item["taken_sort"] = string_value(taken_sort)
    if record.placeholder is not None:
        item["placeholder"] = string_value(record.placeholder)
    if record.thumbhash is not None:
        item["thumbhash"] = string_value(record.thumbhash)
    if record.processed_with is not None:
        item["processed_with"] = string_value(record.processed_with)
    if record.albums:
        item["albums"] = {"SS": sorted(record.albums)}
    if record.focal is not None:
        item["focal"] = {"M": {"x": _decimal(record.focal.x), "y": _decimal(record.focal.y)}}
    if record.status in NEEDS_ATTENTION:
        item["attention_key"] = string_value(attention_key(record))
        # Since when: a trashed image's purge is due by the time it was trashed.
        since = record.trashed_at if record.status is ImageStatus.TRASHED else None
        item["attention_sort"] = string_value(format_timestamp(since or record.updated_at))
    if dead_record_ttl is not None and record.status in _EXPIRING:
        item[EXPIRY_ATTRIBUTE] = number_value(int(record.updated_at.timestamp()) + dead_record_ttl)
    item.update(
        {name: number_value(value) for name, value in optional_numbers.items() if value is not None}
    )
    return item


_UNLISTED_BY_TAG = frozenset({ImageStatus.FETCHING, ImageStatus.PENDING, ImageStatus.TRASHED})


def indexed_tags(record: ImageRecord) -> list[str]:
    """The tags an image is listed by. A pending image is none yet: it has no bytes until its
    upload completes, so it is listed by time and by status only, and the upload-URL path
    writes one item, not one per tag."""
    return [] if record.status in _UNLISTED_BY_TAG else record.tags


# Album memberships (``membership_item``): sort key ``albumimg#<album id>#<upload sort>``, so
# an album lists newest first, a page per query, like every listing.
ALBUM_MARK = "album#"
MEMBERSHIP_MARK = "albumimg#"


def album_id_key(album_id: str) -> str:
    return f"{ALBUM_MARK}{album_id}"


def membership_prefix(album_id: str) -> str:
    return f"{MEMBERSHIP_MARK}{album_id}#"


def membership_item(record: ImageRecord, album_id: str) -> Item:
    """The image's place in one of its owner's albums."""
    return {
        **item_key(record.user_id, membership_prefix(album_id) + upload_sort_key(record)),
        "album_image": string_value(record.image_id),
    }


def tag_copies(record: ImageRecord, image_item: Item) -> list[Item]:
    """The image item once per indexed tag, keyed and indexed for listing by that tag."""
    shared = {name: value for name, value in image_item.items() if name not in _IMAGE_ONLY}
    return [
        {
            **shared,
            "image_id": string_value(tag_copy_id(record.image_id, tag)),
            "tag_key": string_value(tag_key(record.user_id, tag)),
            "tag_sort": image_item["upload_sort"],
        }
        for tag in indexed_tags(record)
    ]


def _variant_item(variant: Variant) -> Item:
    return {
        "name": string_value(variant.name),
        "format": string_value(variant.format),
        "content_type": string_value(variant.content_type),
        "key": string_value(variant.key),
        "width": number_value(variant.width),
        "height": number_value(variant.height),
        "size": number_value(variant.size),
    }


def _photo_item(photo: PhotoMetadata) -> Item:
    item: Item = {}
    if photo.taken_at is not None:
        item["taken_at"] = string_value(format_timestamp(photo.taken_at))
    for name in ("camera", "lens"):
        text = getattr(photo, name)
        if text is not None:
            item[name] = string_value(text)
    for name in ("f_number", "exposure_time", "iso", "focal_length", "orientation"):
        number = getattr(photo, name)
        if number is not None:
            item[name] = {"N": repr(number)}
    if photo.gps is not None:
        gps: Item = {
            "latitude": {"N": repr(photo.gps.latitude)},
            "longitude": {"N": repr(photo.gps.longitude)},
        }
        if photo.gps.altitude is not None:
            gps["altitude"] = {"N": repr(photo.gps.altitude)}
        item["gps"] = {"M": gps}
    return item


def _photo(item: dict[str, Any]) -> PhotoMetadata:
    def number(source: dict[str, Any], name: str) -> float | None:
        value = source.get(name)
        return None if value is None else float(value["N"])

    gps = item.get("gps", {}).get("M")
    iso, orientation = number(item, "iso"), number(item, "orientation")
    return PhotoMetadata(
        taken_at=parse_timestamp(item["taken_at"]["S"]) if "taken_at" in item else None,
        camera=item.get("camera", {}).get("S"),
        lens=item.get("lens", {}).get("S"),
        f_number=number(item, "f_number"),
        exposure_time=number(item, "exposure_time"),
        iso=None if iso is None else int(iso),
        focal_length=number(item, "focal_length"),
        orientation=None if orientation is None else int(orientation),
        gps=None
        if gps is None
        else GpsPosition(
            latitude=float(gps["latitude"]["N"]),
            longitude=float(gps["longitude"]["N"]),
            altitude=number(gps, "altitude"),
        ),
    )


def _variant(item: dict[str, Any]) -> Variant:
    return Variant(
        name=item["name"]["S"],
        format=item["format"]["S"],
        content_type=item["content_type"]["S"],
        key=item["key"]["S"],
        width=int(item["width"]["N"]),
        height=int(item["height"]["N"]),
        size=int(item["size"]["N"]),
    )


def _decimal(value: float) -> dict[str, str]:
    return {"N": repr(round(value, 4))}


def _focal(item: dict[str, Any]) -> FocalPoint:
    return FocalPoint(float(item["x"]["N"]), float(item["y"]["N"]))


def from_item(item: dict[str, Any]) -> ImageRecord:
    def string(name: str) -> str | None:
        value = item.get(name)
        return None if value is None else str(value["S"])

    def number(name: str) -> int | None:
        value = item.get(name)
        return None if value is None else int(value["N"])

    return ImageRecord(
        user_id=item["user_id"]["S"],
        # A tag copy's sort key is "<image id>#tag#<tag>"; image ids never contain "#".
        image_id=item["image_id"]["S"].split("#", 1)[0],
        s3_key=item["s3_key"]["S"],
        content_type=item["content_type"]["S"],
        status=ImageStatus(item["status"]["S"]),
        upload_time=parse_timestamp(item["upload_time"]["S"]),
        updated_at=parse_timestamp(item["updated_at"]["S"]),
        tags=[tag["S"] for tag in item.get("tags", {}).get("L", [])],
        description=item.get("description", {}).get("S", ""),
        filename=string("filename"),
        callback_url=string("callback_url"),
        source_url=string("source_url"),
        declared_size=number("declared_size"),
        declared_checksum_sha256=string("declared_checksum_sha256"),
        upload_id=string("upload_id"),
        part_size=number("part_size"),
        part_checksums=[c["S"] for c in item.get("part_checksums", {}).get("L", [])],
        counted_bytes=number("counted_bytes"),
        size=number("size"),
        width=number("width"),
        height=number("height"),
        sha256=string("sha256"),
        uploaded_sha256=string("uploaded_sha256"),
        rejection_reason=string("rejection_reason"),
        variants=[_variant(entry["M"]) for entry in item.get("variants", {}).get("L", [])],
        photo=_photo(item["photo"]["M"]) if "photo" in item else None,
        placeholder=string("placeholder"),
        thumbhash=string("thumbhash"),
        processed_with=string("processed_with"),
        trashed_at=parse_timestamp(item["trashed_at"]["S"]) if "trashed_at" in item else None,
        trashed_from=ImageStatus(item["trashed_from"]["S"]) if "trashed_from" in item else None,
        albums=sorted(item["albums"]["SS"]) if "albums" in item else [],
        focal=_focal(item["focal"]["M"]) if "focal" in item else None,
        revision=number("revision") or 0,
    )


def legacy_from_item(item: dict[str, Any]) -> LegacyImage:
    tags_value = item.get("tags", {})
    if "L" in tags_value:
        tags = [str(tag["S"]) for tag in tags_value["L"] if "S" in tag]
    elif "SS" in tags_value:
        tags = sorted(str(tag) for tag in tags_value["SS"])
    elif "S" in tags_value:
        tags = [tag.strip() for tag in str(tags_value["S"]).split(",") if tag.strip()]
    else:
        tags = []
    upload_time: datetime | None = None
    try:
        written = datetime.fromisoformat(str(item["upload_time"]["S"]))
        upload_time = (written if written.tzinfo else written.replace(tzinfo=UTC)).astimezone(UTC)
    except (KeyError, ValueError):
        pass
    return LegacyImage(
        user_id=item["user_id"]["S"],
        image_id=item["image_id"]["S"],
        s3_key=item["s3_key"]["S"],
        content_type=item.get("content_type", {}).get("S", "application/octet-stream"),
        upload_time=upload_time,
        tags=tags,
        description=str(item.get("description", {}).get("S", "")),
    )


def item_key(user_id: str, image_id: str) -> Item:
    return {"user_id": string_value(user_id), "image_id": string_value(image_id)}
