"""The fields every schema here is made of: text that refuses control characters and lone
surrogates, tags, an owner's id, timestamps in UTC, and the bounds they share."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from image_service.auth.tokens import MAX_SUBJECT_BYTES
from image_service.domain.models import (
    MAX_DESCRIPTION_LENGTH,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    format_timestamp,
)

# Control characters (C0, DEL, C1) corrupt logs and terminals downstream; a lone surrogate is not
# a character at all and cannot be stored as UTF-8 (DynamoDB refuses the whole write). Free text
# (a description) may keep its tabs and line breaks; every other string is one line.
_CONTROL = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
_LINE_BREAKS = "\t\n\r"
_SURROGATES = "\ud800-\udfff"
_UNSAFE_IN_TEXT = re.compile(f"[{_CONTROL}{_SURROGATES}]")
_UNSAFE_IN_LINE = re.compile(f"[{_CONTROL}{_LINE_BREAKS}{_SURROGATES}]")
_SURROGATE = re.compile(f"[{_SURROGATES}]")
_TAG_EDGES = re.compile(r"^\S(?:.*\S)?$", re.DOTALL)
# The largest object S3 stores: a bound for declared sizes, far above any configured limit.
MAX_DECLARED_SIZE = 5 * 1024**4
BASE64_SHA256 = re.compile(r"^[A-Za-z0-9+/]{43}=$")
ANY_SHA256 = re.compile(r"^(?:[A-Za-z0-9+/]{43}=|[0-9a-fA-F]{64})$")

MAX_FILENAME_LENGTH = 255
# An image id as the service makes them (a UUID, lowercase): what a body may name.
IMAGE_ID_PATTERN = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
IMAGE_ID = validate.Regexp(f"^{IMAGE_ID_PATTERN}$", error="Not an image id.")
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20


def page_limit_field(default: int) -> fields.Integer:
    """A page's size: 1 to ``MAX_PAGE_SIZE``."""
    return fields.Integer(load_default=default, validate=validate.Range(min=1, max=MAX_PAGE_SIZE))


def page_cursor_field() -> Text:
    """Where the next page starts: the previous page's ``next_cursor``."""
    return Text(load_default=None, validate=validate.Length(max=2048))


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE


class Text(fields.String):
    """A string that is safe to store, log and show: no lone surrogates, no control characters
    (``multiline``: tabs and line breaks allowed). Every string the API takes is one."""

    def __init__(self, *, multiline: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._unsafe = _UNSAFE_IN_TEXT if multiline else _UNSAFE_IN_LINE

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text: str = super()._deserialize(value, attr, data, **kwargs)
        found = self._unsafe.search(text)
        if found is not None:
            if _SURROGATE.match(found.group()):
                raise ValidationError("Lone surrogates are not text: send valid Unicode.")
            raise ValidationError(
                f"Control characters are not allowed (found U+{ord(found.group()):04X})."
            )
        return text


def tag_field(**kwargs: Any) -> Text:
    """One tag, as an image's tags are written."""
    return Text(
        validate=[
            validate.Length(min=1, max=MAX_TAG_LENGTH),
            validate.Regexp(_TAG_EDGES, error="Tags have no surrounding spaces."),
        ],
        **kwargs,
    )


def tags_field(
    description: str = f"Up to {MAX_TAGS} tags; stored lowercase, deduplicated.", **kwargs: Any
) -> fields.List[str]:
    return fields.List(
        tag_field(),
        validate=validate.Length(max=MAX_TAGS),
        metadata={"description": description},
        **kwargs,
    )


def description_field(**kwargs: Any) -> fields.String:
    return Text(
        multiline=True,
        validate=validate.Length(max=MAX_DESCRIPTION_LENGTH),
        metadata={"description": "Free text; tabs and line breaks are kept."},
        **kwargs,
    )


def _within_subject_bytes(value: str) -> None:
    if not value or len(value.encode()) > MAX_SUBJECT_BYTES:
        raise ValidationError(f"Must be 1-{MAX_SUBJECT_BYTES} bytes of UTF-8, as a token subject.")


def user_id_field(description: str) -> fields.String:
    return Text(
        validate=_within_subject_bytes,
        metadata={"description": description},
    )


class UtcTimestamp(fields.DateTime):
    """Dumps as ISO 8601 UTC with a ``Z``: ``2026-11-26T15:44:47.123456Z``."""

    def _serialize(self, value: datetime | None, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return None if value is None else format_timestamp(value)


class DateOrDateTime(fields.Field[date]):
    """An ISO 8601 date (``2026-11-26``) or date-time; a date-time without an offset is UTC."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> date:
        if not isinstance(value, str) or len(value) > 64:
            raise ValidationError("Not an ISO 8601 date or date-time.")
        try:
            if len(value) == 10:
                return date.fromisoformat(value)
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError("Not an ISO 8601 date or date-time.") from None
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
