"""The settings by concern: one frozen dataclass per group, each field declared with its
parser and documentation (``values.setting``). ``Settings`` is made of them all."""

from __future__ import annotations

from dataclasses import dataclass

from image_service.settings.values import (
    MAX_URL_EXPIRY_SECONDS,
    MiB,
    parse_addressing_style,
    parse_bool,
    parse_cdn,
    parse_checksum_mode,
    parse_clamd_address,
    parse_content_types,
    parse_csv,
    parse_expiry,
    parse_log_format,
    parse_log_level,
    parse_multipart_bytes,
    parse_non_negative_int,
    parse_part_bytes,
    parse_port,
    parse_positive_int,
    parse_presets,
    parse_qualities,
    parse_secret,
    parse_sizes,
    parse_transport,
    parse_url,
    parse_variant_formats,
    parse_variants,
    parse_wait_seconds,
    parse_webhook_secret,
    setting,
)


@dataclass(frozen=True)
class IdentitySettings:
    """Identity.

    Who a caller is: the keys that verify bearer tokens, and the one that signs list cursors.
    """

    jwt_secret: str = setting(
        "",
        parse_secret,
        "HS256 key for bearer tokens (at least 32 characters). Required unless a JWKS URL is set.",
        secret=True,
    )
    jwt_previous_secret: str | None = setting(
        None,
        parse_secret,
        "The HS256 key being rotated out: tokens it signed are still accepted (and the keys "
        "derived from it still verify cursors and rendition URLs) until it is unset.",
        secret=True,
    )
    jwt_jwks_url: str | None = setting(
        None,
        parse_url,
        "JWKS URL of an identity provider; enables RS256 tokens signed by its keys.",
    )
    jwks_min_refresh_seconds: int = setting(
        30,
        parse_positive_int,
        "Least time between two JWKS fetches (an unknown `kid` triggers one).",
    )
    jwks_max_age_seconds: int = setting(
        600, parse_positive_int, "JWKS keys are refetched after this."
    )
    jwt_audience: str | None = setting(
        None, str, "Required `aud` claim; required itself with a JWKS URL (see the next)."
    )
    jwt_any_audience: bool = setting(
        False,
        parse_bool,
        "With a JWKS URL and no audience: accept tokens the identity provider minted for any "
        "API. Refused at start unless set: such a token with `admin` would be an admin here.",
    )
    jwt_issuer: str | None = setting(None, str, "Required `iss` claim, when set.")
    api_key_cache_seconds: int = setting(
        30,
        parse_positive_int,
        "How long each process remembers an API key's lookup: the bound within which a "
        "revoked key is refused everywhere.",
    )
    cursor_secret: str | None = setting(
        None,
        parse_secret,
        "Key that signs list cursors; derived from the JWT secret when unset.",
        secret=True,
    )


@dataclass(frozen=True)
class ResourceSettings:
    """AWS resources.

    Where the images, the records and the jobs live, and how the service reaches them (region,
    credentials and endpoints come the AWS way: `AWS_*`).
    """

    bucket: str = setting("cloud-image-bucket", str, "S3 bucket holding the images.")
    table: str = setting("ImageMetadata", str, "DynamoDB table holding the metadata.")
    queue_name: str = setting("image-processing", str, "SQS queue of processing jobs.")
    s3_public_url: str | None = setting(
        None,
        parse_url,
        "Base URL clients use to reach S3 when it differs from the service's (compose).",
    )
    s3_addressing_style: str = setting(
        "auto",
        parse_addressing_style,
        "S3 addressing style: auto, path or virtual (path for most stores beyond AWS).",
    )
    s3_checksum_mode: str = setting(
        "when_supported",
        parse_checksum_mode,
        "When botocore adds checksums to S3 requests and checks them on answers: "
        "when_supported (botocore's default, for AWS) or when_required (for S3-compatible "
        "stores that refuse or mishandle the newer checksums: docs/deployment.md).",
    )
    aws_transport: str = setting(
        "aiobotocore",
        parse_transport,
        "How DynamoDB calls, presigned URLs and rendition reads reach AWS: aiobotocore (the "
        "default: botocore's retries, idempotency tokens, hooks and tracing) or direct (this "
        "service's own SigV4 and HTTP: less CPU per call, held to the same tests).",
    )
    s3_event_notifications: bool = setting(
        True,
        parse_bool,
        "init: have S3 queue a job for every upload, so uncompleted ones are processed.",
    )
    dead_record_ttl_seconds: int = setting(
        86400, parse_positive_int, "Pending and rejected records expire (DynamoDB TTL) after this."
    )


@dataclass(frozen=True)
class ApiSettings:
    """The API process.

    Where it listens, what it takes in one request, and how long it holds one.
    """

    host: str = setting("127.0.0.1", str, "Address the API listens on.")
    port: int = setting(8080, parse_port, "Port the API listens on.")
    cors_origins: tuple[str, ...] = setting(
        ("*",),
        parse_csv,
        "Comma-separated origins whose browser pages may call the API and upload to the bucket "
        "(CORS on both; `init` writes the bucket's).",
    )
    max_json_body_bytes: int = setting(
        64 * 1024, parse_positive_int, "Largest JSON request body, bytes."
    )
    request_timeout_seconds: int = setting(
        10,
        parse_positive_int,
        "Deadline of one API request: a backend that has not answered by then gets a 503.",
    )
    shutdown_grace_seconds: int = setting(
        25,
        parse_positive_int,
        "On SIGTERM: how long requests (API) and jobs (worker) in flight may take to finish.",
    )
    embedded_worker: bool = setting(
        False, parse_bool, "Run a queue worker inside the API process (dev does)."
    )
    max_held_waits: int = setting(
        1000,
        parse_positive_int,
        "Requests one API process holds at once: `?wait=ready` reads and `/events` streams.",
    )
    max_held_waits_per_user: int = setting(
        20,
        parse_positive_int,
        "Of those, what one user may hold at once per process; beyond it, 429 Retry-After.",
    )


@dataclass(frozen=True)
class UploadSettings:
    """Uploads and completion.

    What an upload may be, how long its URLs live, and what one user may have under way.
    """

    allowed_content_types: tuple[str, ...] = setting(
        (
            "image/jpeg",
            "image/png",
            "image/gif",
            "image/webp",
            "image/heic",
            "image/heif",
            "image/avif",
        ),
        parse_content_types,
        "Comma-separated content types an upload may declare.",
    )
    max_upload_bytes: int = setting(
        20 * MiB, parse_positive_int, "Largest image uploaded in one PUT or POST, bytes."
    )
    max_multipart_bytes: int = setting(
        1024 * MiB,
        parse_multipart_bytes,
        "Largest image uploaded in parts (`method: MULTIPART`), bytes (≤ 5 GiB).",
    )
    multipart_part_bytes: int = setting(
        8 * MiB,
        parse_part_bytes,
        "Part size of a multipart upload when the client names none (5 MiB-5 GiB).",
    )
    upload_url_expiry: int = setting(
        300,
        parse_expiry,
        f"Lifetime of presigned upload URLs, seconds (≤ {MAX_URL_EXPIRY_SECONDS}).",
    )
    download_url_expiry: int = setting(
        300,
        parse_expiry,
        f"Lifetime of presigned download URLs, seconds (≤ {MAX_URL_EXPIRY_SECONDS}).",
    )
    max_pixels: int = setting(
        50_000_000,
        parse_positive_int,
        "Most pixels in one image (or frame); more is a decompression bomb.",
    )
    max_frames: int = setting(1000, parse_positive_int, "Most frames in an animated image.")
    max_animation_pixels: int = setting(
        100_000_000, parse_positive_int, "Most pixels summed over all frames of an animation."
    )
    inspection_concurrency: int = setting(
        2, parse_positive_int, "Uploads verified (fully decoded) at once per process."
    )
    upload_rate_per_minute: int = setting(
        60,
        parse_positive_int,
        "Upload URLs one user may obtain per minute (token bucket, per replica).",
    )
    upload_burst: int = setting(20, parse_positive_int, "Upload URLs one user may obtain at once.")
    max_open_multipart_per_user: int = setting(
        10,
        parse_positive_int,
        "Multipart uploads one user may have open (not yet completed) at once; their declared "
        "bytes count against the byte quota meanwhile.",
    )
    max_completions_per_user: int = setting(
        16,
        parse_positive_int,
        "Completions (each reads its upload into a temporary file) one user may have running "
        "at once per process; beyond it, 429 Retry-After.",
    )
    import_rate_per_minute: int = setting(
        30,
        parse_positive_int,
        "Imports by URL one user may start per minute (token bucket, per replica); each is "
        "one fetch by a worker.",
    )
    import_burst: int = setting(10, parse_positive_int, "Imports one user may start at once.")
    max_imports_per_user: int = setting(
        20,
        parse_positive_int,
        "Imports one user may have being fetched (not yet verified) at once; beyond, 429.",
    )
    import_timeout_seconds: int = setting(
        30,
        parse_positive_int,
        "The whole of one import's fetch (redirects, headers and body) may take this long; "
        "then it is rejected (fetch_failed).",
    )
    import_allow_private: bool = setting(
        False,
        parse_bool,
        "Let imports fetch from loopback and private addresses (tests, private deployments); "
        "never link-local ones (instance metadata). Off, every address a URL's host resolves "
        "to must be public.",
    )


@dataclass(frozen=True)
class QuotaSettings:
    """Quotas and the trash.

    What one user may keep, and for how long a deleted image may still come back.
    """

    max_images_per_user: int = setting(
        100_000, parse_positive_int, "Quota: images one user may keep."
    )
    max_bytes_per_user: int = setting(
        50 * 1024 * MiB, parse_positive_int, "Quota: bytes of originals one user may keep."
    )
    usage_cache_seconds: int = setting(
        10, parse_non_negative_int, "Age of the usage figure upload URLs are checked against."
    )
    trash_days: int = setting(
        30,
        parse_non_negative_int,
        "Days a deleted image stays in the trash (restorable, still counted in the quota) "
        "before the sweeper purges it; 0: a DELETE deletes at once.",
    )


@dataclass(frozen=True)
class ProcessingSettings:
    """Processing.

    What the worker does to a verified image: scanning, its metadata, its variants.
    """

    clamd_address: str | None = setting(
        None,
        parse_clamd_address,
        "ClamAV daemon: unix:/path/clamd.ctl or tcp:host:port. Off when unset.",
    )
    moderation_webhook_url: str | None = setting(
        None,
        parse_url,
        "Moderation webhook: sent a download URL, answers allow or deny. Off when unset.",
    )
    keep_gps: bool = setting(
        False, parse_bool, "Keep GPS data in JPEG originals (removed by default)."
    )
    variants: tuple[str, ...] = setting(
        ("thumb:256", "medium:1024"), parse_variants, "Variants as name:max-side, comma-separated."
    )
    variant_formats: tuple[str, ...] = setting(
        ("jpeg", "webp"),
        parse_variant_formats,
        "Formats of every variant: one or more of jpeg, webp and avif.",
    )


@dataclass(frozen=True)
class RenditionSettings:
    """Renditions.

    The sizes, qualities and presets a rendition may ask for, its URLs' keys and life, and the
    bounds of rendering.
    """

    render_widths: tuple[int, ...] = setting(
        (64, 128, 256, 320, 480, 512, 640, 800, 1024, 1280, 1600, 1920, 2560),
        parse_sizes,
        "The widths and heights a rendition may ask for, px, comma-separated (anything else: 422).",
    )
    render_qualities: tuple[int, ...] = setting(
        (50, 60, 70, 80, 90),
        parse_qualities,
        "The qualities (`q`) a rendition may ask for; none asked is the format's default.",
    )
    render_presets: tuple[str, ...] = setting(
        ("avatar=128x128:cover", "card=480x320:cover", "hero=1920x1080:inside"),
        parse_presets,
        "Named renditions (`?preset=`), as name=WIDTHxHEIGHT:fit, comma-separated.",
    )
    render_secret: str | None = setting(
        None,
        parse_secret,
        "Key that signs rendition URLs; derived from the JWT (or cursor) secret when unset.",
        secret=True,
    )
    render_previous_secret: str | None = setting(
        None,
        parse_secret,
        "The rendition key being rotated out: URLs it signed are served until it is unset.",
        secret=True,
    )
    rendition_max_age_seconds: int = setting(
        60,
        parse_positive_int,
        "How long a browser or CDN may keep a rendition (Cache-Control max-age), at most: what "
        "a cache may still serve after the image is trashed, quarantined or deleted.",
    )
    render_url_window_seconds: int = setting(
        3600,
        parse_positive_int,
        "A rendition's URL stays the same this long (CDN-friendly) and expires one to two windows "
        "after it is handed out.",
    )
    max_concurrent_renders: int = setting(
        4,
        parse_positive_int,
        "Renditions one API process makes at once; beyond it, 503 Retry-After.",
    )
    max_renders_per_user: int = setting(
        2,
        parse_positive_int,
        "Renditions one user's requests keep rendering at once per process; beyond, 429.",
    )
    render_rate_per_minute: int = setting(
        60, parse_positive_int, "New renditions (not yet stored) one user may cause per minute."
    )
    render_burst: int = setting(
        30, parse_positive_int, "New renditions one user may cause at once."
    )
    rendition_memory_bytes: int = setting(
        32 * MiB,
        parse_non_negative_int,
        "Renditions one API process keeps in memory (the most requested), bytes; 0: none.",
    )
    cdn: str = setting(
        "none",
        parse_cdn,
        "The CDN in front of rendition URLs that the worker purges when an image is trashed, "
        "deleted, quarantined, reprocessed or given a new focal point: none or cloudfront "
        "(through aioboto3; needs the distribution id).",
    )
    cdn_distribution_id: str | None = setting(
        None, str, "The CloudFront distribution serving this service's /r/ rendition URLs."
    )


@dataclass(frozen=True)
class WorkerSettings:
    """The worker and the sweeper.

    How jobs are received, leased and retried, and how often stuck images are looked for.
    """

    worker_concurrency: int = setting(
        4, parse_positive_int, "Jobs one worker process runs at once."
    )
    worker_metrics_port: int = setting(
        0, parse_port, "Port of a worker's own /metrics and /health, on `host` (0: none)."
    )
    queue_wait_seconds: int = setting(
        20, parse_wait_seconds, "Long-poll wait of one receive, seconds (0-20)."
    )
    job_visibility_seconds: int = setting(
        20,
        parse_positive_int,
        "How long a job stays hidden after its worker's last sign of life (extended every half "
        "of it while the job runs): what a worker killed mid-job costs the job.",
    )
    job_max_receives: int = setting(
        5, parse_positive_int, "Tries before a job moves to the dead-letter queue."
    )
    stuck_after_seconds: int = setting(
        600,
        parse_positive_int,
        "Sweeper: an image fetching, processing or deleting for longer than this is driven on "
        "again.",
    )
    sweep_interval_seconds: int = setting(
        60, parse_positive_int, "Sweeper: how often each `worker` process looks for stuck images."
    )
    outbox_relay_seconds: int = setting(
        2,
        parse_positive_int,
        "Outbox relay: how often each worker sends the webhook jobs nobody sent.",
    )
    outbox_grace_seconds: int = setting(
        5,
        parse_positive_int,
        "Outbox relay: how long a change's own process has to send its jobs before the relay "
        "does (a job is queued within grace + interval of its change).",
    )


@dataclass(frozen=True)
class WebhookSettings:
    """Webhooks.

    Where events go, the keys that sign them, and how long a failing one is retried.
    """

    webhook_url: str | None = setting(
        None,
        parse_url,
        "Where every image event is POSTed (image.ready, .rejected, .quarantined, .deleted), "
        "signed per Standard Webhooks. Off when unset.",
    )
    webhook_secret: str | None = setting(
        None,
        parse_webhook_secret,
        "Key that signs the events sent to IMAGE_SERVICE_WEBHOOK_URL: `whsec_` + base64 "
        "(Standard Webhooks), or any string of 24+ characters. Required for webhook_url and for "
        "per-upload callback_url (whose keys are derived per owner from the callback secret).",
        secret=True,
    )
    webhook_previous_secret: str | None = setting(
        None,
        parse_webhook_secret,
        "The webhook key being rotated out: events carry a signature with each key until it "
        "is unset.",
        secret=True,
    )
    callback_secret: str | None = setting(
        None,
        parse_webhook_secret,
        "Master key of the per-owner callback_url signing keys (GET /webhooks/secret shows an "
        "owner theirs); derived from the webhook secret when unset.",
        secret=True,
    )
    callback_previous_secret: str | None = setting(
        None,
        parse_webhook_secret,
        "The callback master key being rotated out: callbacks carry signatures with both "
        "owners' keys until it is unset.",
        secret=True,
    )
    callback_shared_signature: bool = setting(
        False,
        parse_bool,
        "Migration only: callbacks also carry a signature with the webhook secret, for "
        "receivers not yet verifying with their own key. Any tenant given that secret can "
        "forge events to the operator and to other tenants while it is on.",
    )
    webhook_allow_private: bool = setting(
        False,
        parse_bool,
        "Let a per-upload callback_url reach loopback and private addresses; never link-local "
        "ones (instance metadata).",
    )
    webhook_share_viewed: bool = setting(
        False,
        parse_bool,
        "Send `share.viewed` to the webhook URL each time a share link is opened (off: a link "
        "may be opened far more often than anything changes).",
    )
    webhook_cdn_purge: bool = setting(
        False,
        parse_bool,
        "Send `cdn.purge` to the webhook URL with the paths to purge whenever the CDN setting "
        "would purge: for a CDN other than CloudFront.",
    )
    webhook_max_age_seconds: int = setting(
        86400,
        parse_positive_int,
        "How long a failing webhook is retried (with backoff) before it is dead-lettered.",
    )


@dataclass(frozen=True)
class LogSettings:
    """Logs.

    What the service writes, and how.
    """

    log_level: str = setting("INFO", parse_log_level, "DEBUG, INFO, WARNING or ERROR.")
    log_format: str = setting(
        "json", parse_log_format, "json (one object per line, one line per request) or text."
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
