"""Settings read from ``IMAGE_SERVICE_*`` environment variables, validated once at start.

AWS itself (region, credentials, endpoints) is configured the AWS way and read by botocore; only
the public S3 address for presigned URLs is ours, because botocore has no notion of it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from image_service.domain.models import MAX_COPY_BYTES, MAX_PART_BYTES, MIN_PART_BYTES
from image_service.imaging.formats import SNIFFABLE_CONTENT_TYPES

PREFIX = "IMAGE_SERVICE_"
MAX_URL_EXPIRY_SECONDS = 3600
MIN_JWT_SECRET_LENGTH = 32
MiB = 1024 * 1024


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the environment variable."""


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError("must be a positive integer")
    return number


def _int_between(low: int, high: int | None, meaning: str) -> Callable[[str], int]:
    def parse(value: str) -> int:
        number = int(value)
        if number < low or (high is not None and number > high):
            raise ValueError(f"must be {meaning}")
        return number

    return parse


_non_negative_int = _int_between(0, None, "zero or a positive integer")
_port = _int_between(0, 65535, "a TCP port (0-65535)")
_wait_seconds = _int_between(0, 20, "0-20 seconds")
_part_bytes = _int_between(MIN_PART_BYTES, MAX_PART_BYTES, "5 MiB-5 GiB (S3's part sizes)")
_multipart_bytes = _int_between(1, MAX_COPY_BYTES, "1 byte-5 GiB (S3's largest single copy)")


def _expiry(value: str) -> int:
    number = _positive_int(value)
    if number > MAX_URL_EXPIRY_SECONDS:
        raise ValueError(f"must be at most {MAX_URL_EXPIRY_SECONDS} seconds")
    return number


def _content_types(value: str) -> tuple[str, ...]:
    types = tuple(t.lower() for t in _csv(value))
    if not types:
        raise ValueError("must list at least one content type")
    unknown = sorted(set(types) - SNIFFABLE_CONTENT_TYPES)
    if unknown:
        # Completion checks magic bytes; a type we cannot recognise could never be accepted.
        raise ValueError(f"unsupported {unknown}; choose from {sorted(SNIFFABLE_CONTENT_TYPES)}")
    return types


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError("must be an absolute http(s) URL")
    return value.rstrip("/")


def _secret(value: str) -> str:
    if len(value) < MIN_JWT_SECRET_LENGTH:
        raise ValueError(f"must be at least {MIN_JWT_SECRET_LENGTH} characters")
    return value


MIN_WEBHOOK_SECRET_LENGTH = 24


def _webhook_secret(value: str) -> str:
    if value.startswith("whsec_"):
        try:
            key = base64.b64decode(value.removeprefix("whsec_"), validate=True)
        except binascii.Error:
            raise ValueError("whsec_ must be followed by base64") from None
        if len(key) < 16:
            raise ValueError("whsec_ must carry at least 16 bytes")
        return value
    if len(value) < MIN_WEBHOOK_SECRET_LENGTH:
        raise ValueError(
            f"must be whsec_<base64> or at least {MIN_WEBHOOK_SECRET_LENGTH} characters"
        )
    return value


def _one_of(*choices: str) -> Callable[[str], str]:
    """A setting that takes one of ``choices``, spelt exactly."""

    def parse(value: str) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return parse


_addressing_style = _one_of("auto", "path", "virtual")
_transport = _one_of("aiobotocore", "direct")
_checksum_mode = _one_of("when_supported", "when_required")


def _log_level(value: str) -> str:
    level = value.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
    return level


_log_format = _one_of("json", "text")


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("must be true or false")


_VARIANT_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def _variants(value: str) -> tuple[str, ...]:
    specs = _csv(value)
    names = set()
    for spec in specs:
        name, _, side = spec.partition(":")
        if not _VARIANT_NAME.match(name) or not side.isdigit() or not 16 <= int(side) <= 8192:
            raise ValueError(f"{spec!r} is not name:max-side (16-8192 px)")
        names.add(name)
    if not specs or len(names) != len(specs):
        raise ValueError("must list one or more variants with distinct names")
    return specs


def _variant_formats(value: str) -> tuple[str, ...]:
    formats = tuple(f.lower() for f in _csv(value))
    if not formats or set(formats) - {"jpeg", "webp", "avif"}:
        raise ValueError("must be one or more of jpeg, webp and avif")
    return formats


def _distinct_ints(low: int, high: int, meaning: str) -> Callable[[str], tuple[int, ...]]:
    """Comma-separated distinct integers, each in [low, high], in order."""

    def parse(value: str) -> tuple[int, ...]:
        parts = _csv(value)
        numbers = tuple(sorted({int(part) for part in parts if part.isdigit()}))
        if not numbers or len(numbers) != len(parts) or not all(low <= n <= high for n in numbers):
            raise ValueError(f"must list distinct {meaning} of {low}-{high}")
        return numbers

    return parse


_sizes = _distinct_ints(16, 8192, "sizes (px)")
_qualities = _distinct_ints(1, 100, "qualities")


_PRESET = re.compile(r"^([a-z][a-z0-9_]{0,31})=(\d+)x(\d+):(inside|contain|cover)$")


def _presets(value: str) -> tuple[str, ...]:
    presets = _csv(value)
    for preset in presets:
        if not _PRESET.match(preset):
            raise ValueError(f"{preset!r} is not name=WIDTHxHEIGHT:fit (inside, contain, cover)")
    return presets


def _clamd_address(value: str) -> str:
    if not (value.startswith("unix:") or value.startswith("tcp:")):
        raise ValueError("must be unix:/path/to/socket or tcp:host:port")
    return value


def _setting(default: Any, parse: Callable[[str], Any], doc: str, *, secret: bool = False) -> Any:
    # A secret never shows in a repr (so never in a log line or a traceback's locals).
    return field(
        default=default, repr=not secret, metadata={"parse": parse, "doc": doc, "secret": secret}
    )


@dataclass(frozen=True)
class IdentitySettings:
    """Identity.

    Who a caller is: the keys that verify bearer tokens, and the one that signs list cursors.
    """

    jwt_secret: str = _setting(
        "",
        _secret,
        "HS256 key for bearer tokens (at least 32 characters). Required unless a JWKS URL is set.",
        secret=True,
    )
    jwt_previous_secret: str | None = _setting(
        None,
        _secret,
        "The HS256 key being rotated out: tokens it signed are still accepted (and the keys "
        "derived from it still verify cursors and rendition URLs) until it is unset.",
        secret=True,
    )
    jwt_jwks_url: str | None = _setting(
        None, _url, "JWKS URL of an identity provider; enables RS256 tokens signed by its keys."
    )
    jwks_min_refresh_seconds: int = _setting(
        30, _positive_int, "Least time between two JWKS fetches (an unknown `kid` triggers one)."
    )
    jwks_max_age_seconds: int = _setting(600, _positive_int, "JWKS keys are refetched after this.")
    jwt_audience: str | None = _setting(
        None, str, "Required `aud` claim; required itself with a JWKS URL (see the next)."
    )
    jwt_any_audience: bool = _setting(
        False,
        _bool,
        "With a JWKS URL and no audience: accept tokens the identity provider minted for any "
        "API. Refused at start unless set: such a token with `admin` would be an admin here.",
    )
    jwt_issuer: str | None = _setting(None, str, "Required `iss` claim, when set.")
    cursor_secret: str | None = _setting(
        None,
        _secret,
        "Key that signs list cursors; derived from the JWT secret when unset.",
        secret=True,
    )


@dataclass(frozen=True)
class ResourceSettings:
    """AWS resources.

    Where the images, the records and the jobs live, and how the service reaches them (region,
    credentials and endpoints come the AWS way: `AWS_*`).
    """

    bucket: str = _setting("cloud-image-bucket", str, "S3 bucket holding the images.")
    table: str = _setting("ImageMetadata", str, "DynamoDB table holding the metadata.")
    queue_name: str = _setting("image-processing", str, "SQS queue of processing jobs.")
    s3_public_url: str | None = _setting(
        None, _url, "Base URL clients use to reach S3 when it differs from the service's (compose)."
    )
    s3_addressing_style: str = _setting(
        "auto",
        _addressing_style,
        "S3 addressing style: auto, path or virtual (path for most stores beyond AWS).",
    )
    s3_checksum_mode: str = _setting(
        "when_supported",
        _checksum_mode,
        "When botocore adds checksums to S3 requests and checks them on answers: "
        "when_supported (botocore's default, for AWS) or when_required (for S3-compatible "
        "stores that refuse or mishandle the newer checksums: docs/deployment.md).",
    )
    aws_transport: str = _setting(
        "aiobotocore",
        _transport,
        "How DynamoDB calls, presigned URLs and rendition reads reach AWS: aiobotocore (the "
        "default: botocore's retries, idempotency tokens, hooks and tracing) or direct (this "
        "service's own SigV4 and HTTP: less CPU per call, held to the same tests).",
    )
    s3_event_notifications: bool = _setting(
        True,
        _bool,
        "init: have S3 queue a job for every upload, so uncompleted ones are processed.",
    )
    dead_record_ttl_seconds: int = _setting(
        86400, _positive_int, "Pending and rejected records expire (DynamoDB TTL) after this."
    )


@dataclass(frozen=True)
class ApiSettings:
    """The API process.

    Where it listens, what it takes in one request, and how long it holds one.
    """

    host: str = _setting("127.0.0.1", str, "Address the API listens on.")
    port: int = _setting(8080, _port, "Port the API listens on.")
    cors_origins: tuple[str, ...] = _setting(
        ("*",),
        _csv,
        "Comma-separated origins whose browser pages may call the API and upload to the bucket "
        "(CORS on both; `init` writes the bucket's).",
    )
    max_json_body_bytes: int = _setting(
        64 * 1024, _positive_int, "Largest JSON request body, bytes."
    )
    request_timeout_seconds: int = _setting(
        10,
        _positive_int,
        "Deadline of one API request: a backend that has not answered by then gets a 503.",
    )
    shutdown_grace_seconds: int = _setting(
        25,
        _positive_int,
        "On SIGTERM: how long requests (API) and jobs (worker) in flight may take to finish.",
    )
    embedded_worker: bool = _setting(
        False, _bool, "Run a queue worker inside the API process (dev does)."
    )
    max_held_waits: int = _setting(
        1000,
        _positive_int,
        "Requests one API process holds at once: `?wait=ready` reads and `/events` streams.",
    )
    max_held_waits_per_user: int = _setting(
        20,
        _positive_int,
        "Of those, what one user may hold at once per process; beyond it, 429 Retry-After.",
    )


@dataclass(frozen=True)
class UploadSettings:
    """Uploads and completion.

    What an upload may be, how long its URLs live, and what one user may have under way.
    """

    allowed_content_types: tuple[str, ...] = _setting(
        (
            "image/jpeg",
            "image/png",
            "image/gif",
            "image/webp",
            "image/heic",
            "image/heif",
            "image/avif",
        ),
        _content_types,
        "Comma-separated content types an upload may declare.",
    )
    max_upload_bytes: int = _setting(
        20 * MiB, _positive_int, "Largest image uploaded in one PUT or POST, bytes."
    )
    max_multipart_bytes: int = _setting(
        1024 * MiB,
        _multipart_bytes,
        "Largest image uploaded in parts (`method: MULTIPART`), bytes (≤ 5 GiB).",
    )
    multipart_part_bytes: int = _setting(
        8 * MiB,
        _part_bytes,
        "Part size of a multipart upload when the client names none (5 MiB-5 GiB).",
    )
    upload_url_expiry: int = _setting(
        300, _expiry, f"Lifetime of presigned upload URLs, seconds (≤ {MAX_URL_EXPIRY_SECONDS})."
    )
    download_url_expiry: int = _setting(
        300, _expiry, f"Lifetime of presigned download URLs, seconds (≤ {MAX_URL_EXPIRY_SECONDS})."
    )
    max_pixels: int = _setting(
        50_000_000,
        _positive_int,
        "Most pixels in one image (or frame); more is a decompression bomb.",
    )
    max_frames: int = _setting(1000, _positive_int, "Most frames in an animated image.")
    max_animation_pixels: int = _setting(
        100_000_000, _positive_int, "Most pixels summed over all frames of an animation."
    )
    inspection_concurrency: int = _setting(
        2, _positive_int, "Uploads verified (fully decoded) at once per process."
    )
    upload_rate_per_minute: int = _setting(
        60, _positive_int, "Upload URLs one user may obtain per minute (token bucket, per replica)."
    )
    upload_burst: int = _setting(20, _positive_int, "Upload URLs one user may obtain at once.")
    max_open_multipart_per_user: int = _setting(
        10,
        _positive_int,
        "Multipart uploads one user may have open (not yet completed) at once; their declared "
        "bytes count against the byte quota meanwhile.",
    )
    max_completions_per_user: int = _setting(
        16,
        _positive_int,
        "Completions (each reads its upload into a temporary file) one user may have running "
        "at once per process; beyond it, 429 Retry-After.",
    )


@dataclass(frozen=True)
class QuotaSettings:
    """Quotas and the trash.

    What one user may keep, and for how long a deleted image may still come back.
    """

    max_images_per_user: int = _setting(100_000, _positive_int, "Quota: images one user may keep.")
    max_bytes_per_user: int = _setting(
        50 * 1024 * MiB, _positive_int, "Quota: bytes of originals one user may keep."
    )
    usage_cache_seconds: int = _setting(
        10, _non_negative_int, "Age of the usage figure upload URLs are checked against."
    )
    trash_days: int = _setting(
        30,
        _non_negative_int,
        "Days a deleted image stays in the trash (restorable, still counted in the quota) "
        "before the sweeper purges it; 0: a DELETE deletes at once.",
    )


@dataclass(frozen=True)
class ProcessingSettings:
    """Processing.

    What the worker does to a verified image: scanning, its metadata, its variants.
    """

    clamd_address: str | None = _setting(
        None,
        _clamd_address,
        "ClamAV daemon: unix:/path/clamd.ctl or tcp:host:port. Off when unset.",
    )
    moderation_webhook_url: str | None = _setting(
        None,
        _url,
        "Moderation webhook: sent a download URL, answers allow or deny. Off when unset.",
    )
    keep_gps: bool = _setting(False, _bool, "Keep GPS data in JPEG originals (removed by default).")
    variants: tuple[str, ...] = _setting(
        ("thumb:256", "medium:1024"), _variants, "Variants as name:max-side, comma-separated."
    )
    variant_formats: tuple[str, ...] = _setting(
        ("jpeg", "webp"),
        _variant_formats,
        "Formats of every variant: one or more of jpeg, webp and avif.",
    )


@dataclass(frozen=True)
class RenditionSettings:
    """Renditions.

    The sizes, qualities and presets a rendition may ask for, its URLs' keys and life, and the
    bounds of rendering.
    """

    render_widths: tuple[int, ...] = _setting(
        (64, 128, 256, 320, 480, 512, 640, 800, 1024, 1280, 1600, 1920, 2560),
        _sizes,
        "The widths and heights a rendition may ask for, px, comma-separated (anything else: 422).",
    )
    render_qualities: tuple[int, ...] = _setting(
        (50, 60, 70, 80, 90),
        _qualities,
        "The qualities (`q`) a rendition may ask for; none asked is the format's default.",
    )
    render_presets: tuple[str, ...] = _setting(
        ("avatar=128x128:cover", "card=480x320:cover", "hero=1920x1080:inside"),
        _presets,
        "Named renditions (`?preset=`), as name=WIDTHxHEIGHT:fit, comma-separated.",
    )
    render_secret: str | None = _setting(
        None,
        _secret,
        "Key that signs rendition URLs; derived from the JWT (or cursor) secret when unset.",
        secret=True,
    )
    render_previous_secret: str | None = _setting(
        None,
        _secret,
        "The rendition key being rotated out: URLs it signed are served until it is unset.",
        secret=True,
    )
    rendition_max_age_seconds: int = _setting(
        60,
        _positive_int,
        "How long a browser or CDN may keep a rendition (Cache-Control max-age), at most: what "
        "a cache may still serve after the image is trashed, quarantined or deleted.",
    )
    render_url_window_seconds: int = _setting(
        3600,
        _positive_int,
        "A rendition's URL stays the same this long (CDN-friendly) and expires one to two windows "
        "after it is handed out.",
    )
    max_concurrent_renders: int = _setting(
        4, _positive_int, "Renditions one API process makes at once; beyond it, 503 Retry-After."
    )
    max_renders_per_user: int = _setting(
        2,
        _positive_int,
        "Renditions one user's requests keep rendering at once per process; beyond, 429.",
    )
    render_rate_per_minute: int = _setting(
        60, _positive_int, "New renditions (not yet stored) one user may cause per minute."
    )
    render_burst: int = _setting(30, _positive_int, "New renditions one user may cause at once.")
    rendition_memory_bytes: int = _setting(
        32 * MiB,
        _non_negative_int,
        "Renditions one API process keeps in memory (the most requested), bytes; 0: none.",
    )


@dataclass(frozen=True)
class WorkerSettings:
    """The worker and the sweeper.

    How jobs are received, leased and retried, and how often stuck images are looked for.
    """

    worker_concurrency: int = _setting(4, _positive_int, "Jobs one worker process runs at once.")
    worker_metrics_port: int = _setting(
        0, _port, "Port of a worker's own /metrics and /health, on `host` (0: none)."
    )
    queue_wait_seconds: int = _setting(
        20, _wait_seconds, "Long-poll wait of one receive, seconds (0-20)."
    )
    job_visibility_seconds: int = _setting(
        20,
        _positive_int,
        "How long a job stays hidden after its worker's last sign of life (extended every half "
        "of it while the job runs): what a worker killed mid-job costs the job.",
    )
    job_max_receives: int = _setting(
        5, _positive_int, "Tries before a job moves to the dead-letter queue."
    )
    stuck_after_seconds: int = _setting(
        600,
        _positive_int,
        "Sweeper: an image processing or deleting for longer than this is driven on again.",
    )
    sweep_interval_seconds: int = _setting(
        60, _positive_int, "Sweeper: how often each `worker` process looks for stuck images."
    )


@dataclass(frozen=True)
class WebhookSettings:
    """Webhooks.

    Where events go, the keys that sign them, and how long a failing one is retried.
    """

    webhook_url: str | None = _setting(
        None,
        _url,
        "Where every image event is POSTed (image.ready, .rejected, .quarantined, .deleted), "
        "signed per Standard Webhooks. Off when unset.",
    )
    webhook_secret: str | None = _setting(
        None,
        _webhook_secret,
        "Key that signs the events sent to IMAGE_SERVICE_WEBHOOK_URL: `whsec_` + base64 "
        "(Standard Webhooks), or any string of 24+ characters. Required for webhook_url and for "
        "per-upload callback_url (whose keys are derived per owner from the callback secret).",
        secret=True,
    )
    webhook_previous_secret: str | None = _setting(
        None,
        _webhook_secret,
        "The webhook key being rotated out: events carry a signature with each key until it "
        "is unset.",
        secret=True,
    )
    callback_secret: str | None = _setting(
        None,
        _webhook_secret,
        "Master key of the per-owner callback_url signing keys (GET /webhooks/secret shows an "
        "owner theirs); derived from the webhook secret when unset.",
        secret=True,
    )
    callback_previous_secret: str | None = _setting(
        None,
        _webhook_secret,
        "The callback master key being rotated out: callbacks carry signatures with both "
        "owners' keys until it is unset.",
        secret=True,
    )
    callback_shared_signature: bool = _setting(
        False,
        _bool,
        "Migration only: callbacks also carry a signature with the webhook secret, for "
        "receivers not yet verifying with their own key. Any tenant given that secret can "
        "forge events to the operator and to other tenants while it is on.",
    )
    webhook_allow_private: bool = _setting(
        False,
        _bool,
        "Let a per-upload callback_url reach loopback, link-local and private addresses.",
    )
    webhook_max_age_seconds: int = _setting(
        86400,
        _positive_int,
        "How long a failing webhook is retried (with backoff) before it is dead-lettered.",
    )


@dataclass(frozen=True)
class LogSettings:
    """Logs.

    What the service writes, and how.
    """

    log_level: str = _setting("INFO", _log_level, "DEBUG, INFO, WARNING or ERROR.")
    log_format: str = _setting(
        "json", _log_format, "json (one object per line, one line per request) or text."
    )


# Every group, in the order the documentation shows them.
GROUPS: tuple[type, ...] = (
    IdentitySettings,
    ResourceSettings,
    ApiSettings,
    UploadSettings,
    QuotaSettings,
    ProcessingSettings,
    RenditionSettings,
    WorkerSettings,
    WebhookSettings,
    LogSettings,
)


@dataclass(frozen=True)
class Settings(
    LogSettings,
    WebhookSettings,
    WorkerSettings,
    RenditionSettings,
    ProcessingSettings,
    QuotaSettings,
    UploadSettings,
    ApiSettings,
    ResourceSettings,
    IdentitySettings,
):
    """Every setting, read once at start. The groups are its parts: a policy that reads one
    concern takes that group's type (programs/services.py), so it can read nothing else. The
    bases are listed last group first: a dataclass's fields run from its last base to its
    first, and so they run in the order of ``GROUPS``."""

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, verifies_tokens: bool = True
    ) -> Settings:
        """``verifies_tokens=False`` for commands that never see a bearer token (``init``,
        the LocalStack hook): they need no JWT secret."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting in fields(cls):
            name = PREFIX + setting.name.upper()
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            try:
                values[setting.name] = setting.metadata["parse"](raw)
            except ValueError as exc:
                raise SettingsError(f"{name}: {exc}") from None
        if values.get("webhook_url") and not values.get("webhook_secret"):
            raise SettingsError(f"{PREFIX}WEBHOOK_SECRET: is required with {PREFIX}WEBHOOK_URL")
        if (
            verifies_tokens
            and values.get("jwt_jwks_url")
            and not values.get("jwt_audience")
            and not values.get("jwt_any_audience")
        ):
            raise SettingsError(
                f"{PREFIX}JWT_AUDIENCE: is required with {PREFIX}JWT_JWKS_URL (an identity "
                f"provider mints tokens for other APIs too); {PREFIX}JWT_ANY_AUDIENCE=true "
                "accepts every audience"
            )
        if verifies_tokens and not values.get("jwt_secret"):
            if not values.get("jwt_jwks_url"):
                raise SettingsError(f"{PREFIX}JWT_SECRET: is required (or {PREFIX}JWT_JWKS_URL)")
            if not values.get("cursor_secret"):
                # Replicas must agree on the cursor key, and there is no secret to derive it from.
                raise SettingsError(f"{PREFIX}CURSOR_SECRET: is required when no JWT secret is set")
        return cls(**values)

    @staticmethod
    def markdown_table() -> str:
        """The configuration reference (docs/configuration.md), generated from the groups:
        one table per concern."""
        sections = []
        for group in GROUPS:
            title, _, meaning = (group.__doc__ or "").partition(".\n")
            lines = [f"### {title}", "", " ".join(meaning.split()), ""]
            lines += ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
            for setting in fields(group):
                default = setting.default
                shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
                shown = "" if shown in (None, "") else f"`{shown}`"
                name = PREFIX + setting.name.upper()
                lines.append(f"| `{name}` | {shown} | {setting.metadata['doc']} |")
            sections.append("\n".join(lines) + "\n")
        return "\n".join(sections)


def render_keys(renditions: RenditionSettings, identity: IdentitySettings) -> tuple[bytes, ...]:
    """The keys of rendition URLs: the one that signs, then the one being rotated out."""
    if renditions.render_secret:
        keys = [renditions.render_secret, renditions.render_previous_secret]
        return tuple(key.encode() for key in keys if key)
    # Derived apart from the token and cursor keys: no URL signature can double as either.
    # (Under JWKS there is no JWT secret, and the cursor secret is required instead.)
    bases = [identity.jwt_secret or identity.cursor_secret, identity.jwt_previous_secret]
    return tuple(_derived(base, b"image-service/render") for base in bases if base)


def cursor_keys(settings: IdentitySettings) -> tuple[bytes, ...]:
    """The keys of list cursors: the one that signs, then the one being rotated out."""
    if settings.cursor_secret:
        return (settings.cursor_secret.encode(),)
    # A key of its own, derived so that a cursor can never double as a token signature.
    bases = [settings.jwt_secret, settings.jwt_previous_secret]
    return tuple(_derived(base, b"image-service/cursor") for base in bases if base)


def callback_masters(settings: WebhookSettings) -> tuple[str, ...]:
    """The master keys the per-owner callback keys derive from: the current one first."""
    if settings.callback_secret:
        return tuple(s for s in (settings.callback_secret, settings.callback_previous_secret) if s)
    # Derived apart from the operator's key, so that no owner's key can sign for the operator.
    bases = [settings.webhook_secret, settings.webhook_previous_secret]
    return tuple(
        "whsec_" + base64.b64encode(_derived(base, b"image-service/callbacks")).decode()
        for base in bases
        if base
    )


def _derived(base: str, label: bytes) -> bytes:
    return hmac.new(base.encode(), label, hashlib.sha256).digest()
