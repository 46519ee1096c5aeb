"""Settings read from ``IMAGE_SERVICE_*`` environment variables, validated once at start.

AWS itself (region, credentials, endpoints) is configured the AWS way and read by botocore; only
the public S3 address for presigned URLs is ours, because botocore has no notion of it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from image_service.settings.groups import (
    GROUPS,
    ApiSettings,
    IdentitySettings,
    LogSettings,
    ProcessingSettings,
    QuotaSettings,
    RenditionSettings,
    ResourceSettings,
    UploadSettings,
    WebhookSettings,
    WorkerSettings,
)
from image_service.settings.keys import callback_masters, cursor_keys, render_keys
from image_service.settings.values import MAX_URL_EXPIRY_SECONDS

__all__ = [
    "GROUPS",
    "MAX_URL_EXPIRY_SECONDS",
    "PREFIX",
    "ApiSettings",
    "IdentitySettings",
    "LogSettings",
    "ProcessingSettings",
    "QuotaSettings",
    "RenditionSettings",
    "ResourceSettings",
    "Settings",
    "SettingsError",
    "UploadSettings",
    "WebhookSettings",
    "WorkerSettings",
    "callback_masters",
    "cursor_keys",
    "render_keys",
]

PREFIX = "IMAGE_SERVICE_"


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the environment variable."""


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
        if values.get("cdn", "none") != "none" and not values.get("cdn_distribution_id"):
            raise SettingsError(
                f"{PREFIX}CDN_DISTRIBUTION_ID: is required with {PREFIX}CDN={values['cdn']}"
            )
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
