"""Request and response schemas. They validate input, shape output, and are the API docs."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from marshmallow import Schema, fields, post_load, validate

from image_service.domain.callbacks import MAX_CALLBACK_URL_LENGTH
from image_service.domain.imports import MAX_URL_LENGTH as MAX_IMPORT_URL_LENGTH
from image_service.domain.models import (
    FocalPoint,
    ImageStatus,
)
from image_service.domain.uploads import MAX_CHECKED_DIGESTS, MAX_PARTS
from image_service.web.fields import (
    ANY_SHA256,
    BASE64_SHA256,
    DEFAULT_PAGE_SIZE,
    MAX_DECLARED_SIZE,
    MAX_FILENAME_LENGTH,
    MAX_PAGE_SIZE,
    DateOrDateTime,
    StrictSchema,
    Text,
    UtcTimestamp,
    description_field,
    tags_field,
    user_id_field,
)

# -- requests --------------------------------------------------------------------------------------


class UploadRequestSchema(StrictSchema):
    content_type = Text(
        required=True,
        validate=validate.Length(max=100),
        metadata={
            "description": "The image's MIME type; must be in the allowlist.",
            "example": "image/jpeg",
        },
    )
    size = fields.Integer(
        strict=True,
        validate=validate.Range(min=1, max=MAX_DECLARED_SIZE),
        metadata={"description": "Exact size in bytes. When given it is signed into the URL."},
    )
    tags = tags_field(load_default=list)
    description = description_field(load_default="")
    checksum_sha256 = Text(
        validate=validate.Regexp(BASE64_SHA256, error="Must be a base64 SHA-256 digest."),
        metadata={"description": "Base64 SHA-256 of the bytes; S3 verifies it when given."},
    )
    filename = Text(
        validate=validate.Length(min=1, max=MAX_FILENAME_LENGTH),
        metadata={"description": "Original file name, offered (sanitized) on download."},
    )
    method = Text(
        load_default="PUT",
        validate=validate.OneOf(["PUT", "POST", "MULTIPART"]),
        metadata={
            "description": "PUT (default): a presigned PUT. POST: a browser form policy. "
            "MULTIPART: a presigned URL per part (up to IMAGE_SERVICE_MAX_MULTIPART_BYTES), "
            "resumable; needs size."
        },
    )
    part_size = fields.Integer(
        strict=True,
        validate=validate.Range(min=1, max=MAX_DECLARED_SIZE),
        metadata={
            "description": "MULTIPART: bytes per part, 5 MiB-5 GiB, at most 1,000 parts "
            "(default IMAGE_SERVICE_MULTIPART_PART_BYTES). Every part but the last is this long."
        },
    )
    part_checksums = fields.List(
        Text(validate=validate.Regexp(BASE64_SHA256, error="Must be a base64 SHA-256 digest.")),
        validate=validate.Length(min=1, max=MAX_PARTS),
        metadata={
            "description": "MULTIPART: each part's base64 SHA-256, in order. Signed into its "
            "part URL, so S3 refuses a part with other bytes."
        },
    )
    if_exists = Text(
        load_default="create",
        validate=validate.OneOf(["create", "return"]),
        metadata={
            "description": "return: if the caller already has an image of these bytes "
            "(checksum_sha256), answer it (200) instead of a new upload URL (201)."
        },
    )
    callback_url = Text(
        validate=validate.Length(min=1, max=MAX_CALLBACK_URL_LENGTH),
        metadata={
            "description": "Also POST this image's events here (image.ready, .rejected, "
            ".quarantined, .deleted), signed like the deployment's webhooks. Public http(s) "
            "addresses only, unless IMAGE_SERVICE_WEBHOOK_ALLOW_PRIVATE."
        },
    )
    user_id = user_id_field("Owner; must be the caller unless the caller is an admin.")


class DigestCheckSchema(StrictSchema):
    checksums_sha256 = fields.List(
        Text(validate=validate.Regexp(ANY_SHA256, error="Must be a SHA-256: base64 or hex.")),
        required=True,
        validate=validate.Length(min=1, max=MAX_CHECKED_DIGESTS),
        metadata={"description": f"Up to {MAX_CHECKED_DIGESTS} SHA-256 digests, base64 or hex."},
    )
    user_id = user_id_field("Check another user's images (admin only).")


class FocalSchema(StrictSchema):
    x = fields.Float(
        required=True,
        allow_nan=False,
        validate=validate.Range(min=0, max=1),
        metadata={"description": "From the left edge (0) to the right (1)."},
    )
    y = fields.Float(
        required=True,
        allow_nan=False,
        validate=validate.Range(min=0, max=1),
        metadata={"description": "From the top edge (0) to the bottom (1)."},
    )

    @post_load
    def _point(self, data: dict[str, float], **_: Any) -> FocalPoint:
        return FocalPoint(data["x"], data["y"])


def _focal_field(**kwargs: Any) -> fields.Nested:
    return fields.Nested(
        FocalSchema,
        allow_none=True,
        metadata={
            "description": "The subject's point, as fractions of the oriented image: what a "
            "cover rendition keeps when it crops (gravity=focal, the default once set); null "
            "clears it. Changing it changes the image's rendition URLs (and purges a CDN)."
        },
        **kwargs,
    )


class ImportRequestSchema(StrictSchema):
    url = Text(
        required=True,
        validate=validate.Length(min=1, max=MAX_IMPORT_URL_LENGTH),
        metadata={
            "description": "An http(s) URL of an image, no credentials in it, its host a public "
            "address (unless IMAGE_SERVICE_IMPORT_ALLOW_PRIVATE). A worker fetches it (up to 3 "
            "redirects, each checked; IMAGE_SERVICE_MAX_UPLOAD_BYTES at most; within "
            "IMAGE_SERVICE_IMPORT_TIMEOUT_SECONDS) and verifies it as an upload."
        },
    )
    tags = tags_field(load_default=list)
    description = description_field(load_default="")
    filename = Text(
        validate=validate.Length(min=1, max=MAX_FILENAME_LENGTH),
        metadata={"description": "File name offered (sanitized) on download."},
    )
    user_id = user_id_field("Import for another user (admin only).")


class ImagePatchSchema(StrictSchema):
    tags = tags_field()
    description = description_field()
    focal = _focal_field()


class OwnerQuerySchema(StrictSchema):
    user_id = user_id_field("Act on another user's image (admin only).")


class DeleteQuerySchema(OwnerQuerySchema):
    permanent = fields.Boolean(
        load_default=False,
        metadata={
            "description": "Delete at once, for good (also from the trash), instead of moving "
            "the image to the trash."
        },
    )


class PurgedSchema(Schema):
    purged = fields.Integer(required=True, metadata={"description": "Images deleted for good."})


class CallbackSecretSchema(Schema):
    secret = fields.String(
        required=True,
        metadata={
            "description": "The key that signs this owner's callback_url deliveries, as "
            "Standard Webhooks writes keys (whsec_ + base64): give it to any Standard Webhooks "
            "library, or to image_service.client.webhooks.verify. Yours alone: it verifies "
            "nothing sent to the operator or to other users."
        },
    )


MAX_WAIT_SECONDS = 20


class ImageQuerySchema(OwnerQuerySchema):
    wait = Text(
        validate=validate.OneOf(["ready"]),
        metadata={
            "description": "ready: hold the request until the image leaves pending and "
            "processing (ready, rejected, quarantined...) or the timeout passes, then answer it."
        },
    )
    timeout = fields.Integer(
        strict=False,
        load_default=MAX_WAIT_SECONDS,
        validate=validate.Range(min=0, max=MAX_WAIT_SECONDS),
        metadata={"description": "Seconds to hold at most (with wait), 0-20."},
    )


class EventsQuerySchema(OwnerQuerySchema):
    access_token = Text(
        validate=validate.Length(min=1, max=8192),
        metadata={
            "description": "The bearer token, for clients that cannot send a header "
            "(a browser's EventSource). Prefer the Authorization header."
        },
    )


class DownloadQuerySchema(OwnerQuerySchema):
    redirect = fields.Boolean(
        load_default=False, metadata={"description": "Answer 302 to the URL instead of JSON."}
    )
    variant = Text(
        validate=validate.Length(min=1, max=32),
        metadata={"description": "A variant's name (e.g. thumb); the original when absent."},
    )
    format = Text(
        load_default="jpeg",
        validate=validate.OneOf(["jpeg", "webp", "avif"]),
        metadata={"description": "The variant's format."},
    )


class RenderQuerySchema(OwnerQuerySchema):
    w = fields.Integer(
        strict=False,
        validate=validate.Range(min=1, max=100_000),
        metadata={"description": "Width at most, px: one of IMAGE_SERVICE_RENDER_WIDTHS."},
    )
    h = fields.Integer(
        strict=False,
        validate=validate.Range(min=1, max=100_000),
        metadata={"description": "Height at most, px: one of IMAGE_SERVICE_RENDER_WIDTHS."},
    )
    fit = Text(
        load_default="inside",
        validate=validate.OneOf(["inside", "contain", "cover"]),
        metadata={
            "description": "inside: the whole image within w x h; contain: the same, centred "
            "on a canvas of exactly w x h; cover: w x h filled, cropped where gravity says. "
            "Never upscaled."
        },
    )
    gravity = Text(
        validate=validate.OneOf(["center", "focal", "auto"]),
        metadata={
            "description": "What a cover crop keeps (cover only): center; focal, the image's "
            "focal point (its centre when it has none); auto, the most salient region "
            "(libvips' attention: edges, skin tones, saturated colour). Default: focal when "
            "the image has a focal point, else auto."
        },
    )
    format = Text(
        load_default="auto",
        validate=validate.OneOf(["auto", "jpeg", "webp", "avif"]),
        metadata={
            "description": "auto: what the delivering request's Accept header takes best "
            "(AVIF, then WebP, then JPEG), with Vary: Accept."
        },
    )
    q = fields.Integer(
        strict=False,
        validate=validate.Range(min=1, max=100),
        metadata={"description": "Quality: one of IMAGE_SERVICE_RENDER_QUALITIES."},
    )
    preset = Text(
        validate=validate.Length(min=1, max=32),
        metadata={"description": "A named size and fit (IMAGE_SERVICE_RENDER_PRESETS)."},
    )
    redirect = fields.Boolean(
        load_default=False, metadata={"description": "Answer 302 to the URL instead of JSON."}
    )


class RenderResponseSchema(Schema):
    url = fields.String(
        required=True,
        metadata={
            "description": "The signed delivery URL: no token needed until it expires; any "
            "change to it is refused (403). The same for one rendition all through a signing "
            "window (IMAGE_SERVICE_RENDER_URL_WINDOW_SECONDS), so caches keep it."
        },
    )
    expires_at = UtcTimestamp(required=True)


class ListQuerySchema(StrictSchema):
    tag = tags_field(
        "Only images with every one of these tags (repeat the parameter). Tags index an image "
        "once its upload is completed: pending uploads are listed by time and status only.",
        load_default=list,
    )
    start_date = DateOrDateTime(
        metadata={"description": "Uploaded at or after (ISO 8601 date or date-time)."}
    )
    end_date = DateOrDateTime(
        metadata={"description": "Uploaded at or before; a bare date includes the whole day."}
    )
    status = fields.Enum(ImageStatus, by_value=True)
    sort = Text(
        load_default="upload_time",
        validate=validate.OneOf(["upload_time", "taken_at"]),
        metadata={
            "description": "upload_time (default), or taken_at: newest taken first, only "
            "images whose EXIF says when (tags, status and upload dates then filter)."
        },
    )
    taken_from = DateOrDateTime(
        metadata={"description": "Taken at or after (ISO 8601); implies sort=taken_at."}
    )
    taken_to = DateOrDateTime(
        metadata={
            "description": "Taken at or before; a bare date includes the whole day. Implies "
            "sort=taken_at."
        }
    )
    limit = fields.Integer(
        load_default=DEFAULT_PAGE_SIZE, validate=validate.Range(min=1, max=MAX_PAGE_SIZE)
    )
    cursor = Text(
        validate=validate.Length(max=1024),
        metadata={"description": "next_cursor of the previous page."},
    )
    user_id = user_id_field("List another user's images (admin only).")

    @post_load
    def _day_bounds(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        for low, high in (("start_date", "end_date"), ("taken_from", "taken_to")):
            start, end = data.get(low), data.get(high)
            if start is not None and not isinstance(start, datetime):
                data[low] = datetime.combine(start, time.min, UTC)
            if end is not None and not isinstance(end, datetime):
                data[high] = datetime.combine(end, time.max, UTC)
        return data


# -- responses -------------------------------------------------------------------------------------


class PartUploadSchema(Schema):
    part_number = fields.Integer(required=True)
    size = fields.Integer(required=True, metadata={"description": "Exactly this many bytes."})
    url = fields.String(required=True)
    headers = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        required=True,
        metadata={"description": "Exactly the headers the part's PUT must send."},
    )


class UploadedPartSchema(Schema):
    part_number = fields.Integer(required=True)
    size = fields.Integer(required=True)
    etag = fields.String(required=True)
    checksum_sha256 = fields.String(allow_none=True)


class UploadResponseSchema(Schema):
    image_id = fields.String(required=True)
    upload_url = fields.String(
        metadata={"description": "PUT and POST: where to send the bytes (not for MULTIPART)."}
    )
    method = fields.String(required=True, metadata={"enum": ["PUT", "POST", "MULTIPART"]})
    upload_id = fields.String(metadata={"description": "MULTIPART: S3's upload id."})
    part_size = fields.Integer(metadata={"description": "MULTIPART: bytes per part."})
    parts = fields.List(
        fields.Nested(PartUploadSchema),
        metadata={"description": "MULTIPART: one URL per part; PUT them in any order, at once."},
    )
    headers = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        required=True,
        metadata={"description": "Exactly the headers a PUT must send."},
    )
    fields_ = fields.Dict(
        data_key="fields",
        attribute="fields",
        keys=fields.String(),
        values=fields.String(),
        required=True,
        metadata={"description": "The form fields a POST must send before the file."},
    )
    expires_at = UtcTimestamp(required=True)


class VariantSchema(Schema):
    name = fields.String(required=True)
    format = fields.String(required=True)
    content_type = fields.String(required=True)
    width = fields.Integer(required=True)
    height = fields.Integer(required=True)
    size = fields.Integer(required=True)


class GpsSchema(Schema):
    latitude = fields.Float(required=True)
    longitude = fields.Float(required=True)
    altitude = fields.Float(allow_none=True, metadata={"description": "Metres above sea level."})


class PhotoSchema(Schema):
    taken_at = UtcTimestamp(
        allow_none=True,
        metadata={
            "description": "When it was taken, UTC (EXIF DateTimeOriginal at its recorded "
            "offset; a camera that records none is read as UTC)."
        },
    )
    camera = fields.String(allow_none=True, metadata={"description": "Make and model."})
    lens = fields.String(allow_none=True)
    f_number = fields.Float(allow_none=True)
    exposure_time = fields.Float(allow_none=True, metadata={"description": "Seconds."})
    iso = fields.Integer(allow_none=True)
    focal_length = fields.Float(allow_none=True, metadata={"description": "Millimetres."})
    orientation = fields.Integer(
        allow_none=True,
        metadata={"description": "EXIF orientation, 1-8 (variants and renditions are upright)."},
    )
    gps = fields.Nested(
        GpsSchema,
        allow_none=True,
        metadata={
            "description": "Where it was taken: only when the service keeps GPS "
            "(IMAGE_SERVICE_KEEP_GPS), and only in answers to the image's owner."
        },
    )


class ImageSchema(Schema):
    image_id = fields.String(required=True)
    user_id = fields.String(required=True)
    status = fields.Enum(ImageStatus, by_value=True, required=True)
    content_type = fields.String(required=True)
    size = fields.Integer(allow_none=True, metadata={"description": "Bytes, once verified."})
    width = fields.Integer(allow_none=True)
    height = fields.Integer(allow_none=True)
    sha256 = fields.String(allow_none=True, metadata={"description": "Hex SHA-256, once verified."})
    tags = fields.List(fields.String(), required=True)
    description = fields.String(required=True)
    filename = fields.String(allow_none=True)
    variants = fields.List(fields.Nested(VariantSchema), required=True)
    photo = fields.Nested(
        PhotoSchema,
        allow_none=True,
        metadata={"description": "What the photo's EXIF says, once processed; null if nothing."},
    )
    placeholder = fields.String(
        allow_none=True, metadata={"description": "Dominant colour (#rrggbb) to show meanwhile."}
    )
    thumbhash = fields.String(
        allow_none=True,
        metadata={
            "description": "A blurred preview to show meanwhile: a ThumbHash, base64 "
            "(github.com/evanw/thumbhash decodes it in a few lines of JavaScript or Swift)."
        },
    )
    focal = _focal_field()
    reason = fields.String(
        allow_none=True,
        attribute="rejection_reason",
        metadata={
            "description": "Why it was rejected or quarantined (content_mismatch, too_large, "
            "fetch_refused...); null otherwise."
        },
    )
    source_url = fields.String(
        allow_none=True,
        metadata={"description": "Imported by URL (POST /images/import): where from."},
    )
    upload_time = UtcTimestamp(required=True)
    updated_at = UtcTimestamp(required=True)


class PartsResponseSchema(Schema):
    image_id = fields.String(required=True)
    upload_id = fields.String(required=True)
    size = fields.Integer(required=True)
    part_size = fields.Integer(required=True)
    uploaded = fields.List(
        fields.Nested(UploadedPartSchema),
        required=True,
        metadata={"description": "The parts S3 holds at their right length."},
    )
    parts = fields.List(
        fields.Nested(PartUploadSchema),
        required=True,
        metadata={"description": "Fresh URLs for every part still to upload."},
    )
    expires_at = UtcTimestamp(required=True)


class OwnedDigestSchema(Schema):
    checksum_sha256 = fields.String(required=True, attribute="checksum")
    image_id = fields.String(
        allow_none=True,
        required=True,
        metadata={"description": "An image of the caller's with these bytes; null if none."},
    )


class DigestCheckResponseSchema(Schema):
    results = fields.List(
        fields.Nested(OwnedDigestSchema),
        required=True,
        metadata={"description": "One per digest asked about, in the same order."},
    )


class ImagePageSchema(Schema):
    items = fields.List(fields.Nested(ImageSchema), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class DownloadResponseSchema(Schema):
    download_url = fields.String(required=True, attribute="url")
    expires_at = UtcTimestamp(required=True)


class HealthSchema(Schema):
    status = fields.String(required=True)
    checks = fields.Dict(keys=fields.String(), values=fields.String())


class ErrorBodySchema(Schema):
    code = fields.String(required=True, metadata={"example": "image_not_found"})
    message = fields.String(required=True)
    details = fields.Dict(required=True)


class ErrorSchema(Schema):
    error = fields.Nested(ErrorBodySchema, required=True)
