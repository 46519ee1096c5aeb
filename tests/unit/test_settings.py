"""Settings from the environment, and the command line."""

from __future__ import annotations

from dataclasses import fields

import jwt
import pytest

from image_service.programs.cli import main
from image_service.settings import GROUPS, Settings, SettingsError
from tests.integration.conftest import JWT_SECRET

BASE = {"IMAGE_SERVICE_JWT_SECRET": JWT_SECRET}


def test_defaults() -> None:
    settings = Settings.from_env(BASE)
    assert settings.bucket == "cloud-image-bucket"
    assert settings.table == "ImageMetadata"
    assert settings.port == 8080
    assert settings.max_upload_bytes == 20 * 1024 * 1024
    assert settings.upload_url_expiry == 300
    assert settings.allowed_content_types == (
        "image/jpeg",
        "image/png",
        "image/gif",
        "image/webp",
        "image/heic",
        "image/heif",
        "image/avif",
    )


def test_values_are_parsed() -> None:
    settings = Settings.from_env(
        {
            **BASE,
            "IMAGE_SERVICE_BUCKET": "pics",
            "IMAGE_SERVICE_PORT": "9000",
            "IMAGE_SERVICE_ALLOWED_CONTENT_TYPES": "image/png, IMAGE/GIF",
            "IMAGE_SERVICE_UPLOAD_URL_EXPIRY": "3600",
            "IMAGE_SERVICE_S3_PUBLIC_URL": "http://localhost:4566/",
        }
    )
    assert (settings.bucket, settings.port) == ("pics", 9000)
    assert settings.allowed_content_types == ("image/png", "image/gif")
    assert settings.upload_url_expiry == 3600
    assert settings.s3_public_url == "http://localhost:4566"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IMAGE_SERVICE_PORT", "eighty"),
        ("IMAGE_SERVICE_PORT", "70000"),
        ("IMAGE_SERVICE_UPLOAD_URL_EXPIRY", "3601"),
        ("IMAGE_SERVICE_DOWNLOAD_URL_EXPIRY", "0"),
        ("IMAGE_SERVICE_MAX_UPLOAD_BYTES", "-1"),
        ("IMAGE_SERVICE_ALLOWED_CONTENT_TYPES", "image/png,image/svg+xml"),
        ("IMAGE_SERVICE_ALLOWED_CONTENT_TYPES", " , "),
        ("IMAGE_SERVICE_S3_PUBLIC_URL", "localhost:4566"),
        ("IMAGE_SERVICE_JWT_SECRET", "short"),
        ("IMAGE_SERVICE_S3_ADDRESSING_STYLE", "sideways"),
        ("IMAGE_SERVICE_LOG_LEVEL", "LOUD"),
    ],
)
def test_a_bad_value_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^{name}: "):
        Settings.from_env({**BASE, name: value})


def test_the_jwt_secret_is_required() -> None:
    with pytest.raises(SettingsError, match=r"^IMAGE_SERVICE_JWT_SECRET: is required"):
        Settings.from_env({})


def test_a_jwks_url_alone_needs_a_cursor_secret() -> None:
    jwks = {
        "IMAGE_SERVICE_JWT_JWKS_URL": "https://idp.example.test/.well-known/jwks.json",
        "IMAGE_SERVICE_JWT_AUDIENCE": "https://images.example.test",
    }
    with pytest.raises(SettingsError, match=r"^IMAGE_SERVICE_CURSOR_SECRET: "):
        Settings.from_env(jwks)
    settings = Settings.from_env({**jwks, "IMAGE_SERVICE_CURSOR_SECRET": "c" * 32})
    assert settings.jwt_secret == ""
    assert settings.jwt_jwks_url == jwks["IMAGE_SERVICE_JWT_JWKS_URL"]


def test_a_jwks_url_needs_an_audience_unless_any_is_accepted_by_name() -> None:
    """An identity provider mints tokens for many APIs: without an audience, a token it made
    for another API (with `admin` in its scope) would be an admin here."""
    jwks = {
        "IMAGE_SERVICE_JWT_JWKS_URL": "https://idp.example.test/.well-known/jwks.json",
        "IMAGE_SERVICE_CURSOR_SECRET": "c" * 32,
    }
    with pytest.raises(SettingsError, match=r"^IMAGE_SERVICE_JWT_AUDIENCE: is required"):
        Settings.from_env(jwks)
    for refused in ("false", "0"):
        with pytest.raises(SettingsError, match=r"^IMAGE_SERVICE_JWT_AUDIENCE: "):
            Settings.from_env({**jwks, "IMAGE_SERVICE_JWT_ANY_AUDIENCE": refused})
    opted_out = Settings.from_env({**jwks, "IMAGE_SERVICE_JWT_ANY_AUDIENCE": "true"})
    assert opted_out.jwt_any_audience
    assert opted_out.jwt_audience is None
    # A shared secret alone (tokens this deployment mints itself) needs none.
    assert Settings.from_env({"IMAGE_SERVICE_JWT_SECRET": JWT_SECRET}).jwt_audience is None


def test_cli_reports_configuration_errors_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IMAGE_SERVICE_JWT_SECRET", JWT_SECRET)
    monkeypatch.setenv("IMAGE_SERVICE_PORT", "nope")
    with pytest.raises(SystemExit) as exit_info:
        main(["serve"])
    assert exit_info.value.code == 2
    assert "IMAGE_SERVICE_PORT" in capsys.readouterr().err


def test_cli_token_is_signed_with_the_configured_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IMAGE_SERVICE_JWT_SECRET", JWT_SECRET)
    main(["token", "carol", "--admin", "--ttl", "120"])
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "carol"
    assert claims["scope"] == "admin"
    assert claims["exp"] - claims["iat"] == 120


def test_secrets_never_show_in_the_settings_repr() -> None:
    secret, cursor = "s" * 40, "c" * 40
    settings = Settings(jwt_secret=secret, cursor_secret=cursor)
    shown = repr(settings)
    assert secret not in shown
    assert cursor not in shown
    assert "bucket='cloud-image-bucket'" in shown


def test_every_setting_belongs_to_exactly_one_group() -> None:
    grouped = [setting.name for group in GROUPS for setting in fields(group)]
    assert len(grouped) == len(set(grouped))
    assert grouped == [setting.name for setting in fields(Settings)]  # in the groups' order
