"""How a setting's text becomes its value: the parsers every ``IMAGE_SERVICE_*`` variable goes
through (each refuses with a ValueError that says what it must be), and the field a setting is
declared with."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import field
from typing import Any
from urllib.parse import urlsplit

from image_service.domain.models import MAX_COPY_BYTES, MAX_PART_BYTES, MIN_PART_BYTES
from image_service.imaging.formats import SNIFFABLE_CONTENT_TYPES

MAX_URL_EXPIRY_SECONDS = 3600
MIN_JWT_SECRET_LENGTH = 32
MiB = 1024 * 1024


def parse_csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def parse_positive_int(value: str) -> int:
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


parse_non_negative_int = _int_between(0, None, "zero or a positive integer")
parse_port = _int_between(0, 65535, "a TCP port (0-65535)")
parse_wait_seconds = _int_between(0, 20, "0-20 seconds")
parse_part_bytes = _int_between(MIN_PART_BYTES, MAX_PART_BYTES, "5 MiB-5 GiB (S3's part sizes)")
parse_multipart_bytes = _int_between(1, MAX_COPY_BYTES, "1 byte-5 GiB (S3's largest single copy)")


def parse_expiry(value: str) -> int:
    number = parse_positive_int(value)
    if number > MAX_URL_EXPIRY_SECONDS:
        raise ValueError(f"must be at most {MAX_URL_EXPIRY_SECONDS} seconds")
    return number


def parse_content_types(value: str) -> tuple[str, ...]:
    types = tuple(t.lower() for t in parse_csv(value))
    if not types:
        raise ValueError("must list at least one content type")
    unknown = sorted(set(types) - SNIFFABLE_CONTENT_TYPES)
    if unknown:
        # Completion checks magic bytes; a type we cannot recognise could never be accepted.
        raise ValueError(f"unsupported {unknown}; choose from {sorted(SNIFFABLE_CONTENT_TYPES)}")
    return types


def parse_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError("must be an absolute http(s) URL")
    return value.rstrip("/")


def parse_secret(value: str) -> str:
    if len(value) < MIN_JWT_SECRET_LENGTH:
        raise ValueError(f"must be at least {MIN_JWT_SECRET_LENGTH} characters")
    return value


MIN_WEBHOOK_SECRET_LENGTH = 24


def parse_webhook_secret(value: str) -> str:
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


parse_addressing_style = _one_of("auto", "path", "virtual")
parse_transport = _one_of("aiobotocore", "direct")
parse_checksum_mode = _one_of("when_supported", "when_required")
parse_cdn = _one_of("none", "cloudfront")


def parse_log_level(value: str) -> str:
    level = value.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
    return level


parse_log_format = _one_of("json", "text")


def parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("must be true or false")


_VARIANT_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def parse_variants(value: str) -> tuple[str, ...]:
    specs = parse_csv(value)
    names = set()
    for spec in specs:
        name, _, side = spec.partition(":")
        if not _VARIANT_NAME.match(name) or not side.isdigit() or not 16 <= int(side) <= 8192:
            raise ValueError(f"{spec!r} is not name:max-side (16-8192 px)")
        names.add(name)
    if not specs or len(names) != len(specs):
        raise ValueError("must list one or more variants with distinct names")
    return specs


def parse_variant_formats(value: str) -> tuple[str, ...]:
    formats = tuple(f.lower() for f in parse_csv(value))
    if not formats or set(formats) - {"jpeg", "webp", "avif"}:
        raise ValueError("must be one or more of jpeg, webp and avif")
    return formats


def _distinct_ints(low: int, high: int, meaning: str) -> Callable[[str], tuple[int, ...]]:
    """Comma-separated distinct integers, each in [low, high], in order."""

    def parse(value: str) -> tuple[int, ...]:
        parts = parse_csv(value)
        numbers = tuple(sorted({int(part) for part in parts if part.isdigit()}))
        if not numbers or len(numbers) != len(parts) or not all(low <= n <= high for n in numbers):
            raise ValueError(f"must list distinct {meaning} of {low}-{high}")
        return numbers

    return parse


parse_sizes = _distinct_ints(16, 8192, "sizes (px)")
parse_qualities = _distinct_ints(1, 100, "qualities")


_PRESET = re.compile(r"^([a-z][a-z0-9_]{0,31})=(\d+)x(\d+):(inside|contain|cover)$")


def parse_presets(value: str) -> tuple[str, ...]:
    presets = parse_csv(value)
    for preset in presets:
        if not _PRESET.match(preset):
            raise ValueError(f"{preset!r} is not name=WIDTHxHEIGHT:fit (inside, contain, cover)")
    return presets


def parse_clamd_address(value: str) -> str:
    if not (value.startswith("unix:") or value.startswith("tcp:")):
        raise ValueError("must be unix:/path/to/socket or tcp:host:port")
    return value


def setting(default: Any, parse: Callable[[str], Any], doc: str, *, secret: bool = False) -> Any:
    # A secret never shows in a repr (so never in a log line or a traceback's locals).
    return field(
        default=default, repr=not secret, metadata={"parse": parse, "doc": doc, "secret": secret}
    )
