"""What the API takes, checked without a server: the schemas' text rules and the error
envelope's encoder."""

from __future__ import annotations

import json

import pytest
from marshmallow import ValidationError

from image_service.imaging.formats import content_type_from_magic
from image_service.web.encoding import envelope_text
from image_service.web.schemas import ImagePatchSchema, UploadRequestSchema

LONE_SURROGATE = "\ud800"


@pytest.mark.parametrize("bad", [LONE_SURROGATE, "\x00", "\x1b", "\x7f", "\x85"])
@pytest.mark.parametrize("field", ["content_type", "filename", "user_id", "tags"])
def test_one_line_fields_refuse_unsafe_characters(field: str, bad: str) -> None:
    body = {"content_type": "image/png", field: [f"a{bad}"] if field == "tags" else f"a{bad}"}
    with pytest.raises(ValidationError) as refused:
        UploadRequestSchema().load(body)
    assert field in refused.value.messages


def test_a_description_keeps_tabs_and_line_breaks_and_refuses_the_rest() -> None:
    assert ImagePatchSchema().load({"description": "a\tb\r\nc"}) == {"description": "a\tb\r\nc"}
    with pytest.raises(ValidationError):
        ImagePatchSchema().load({"description": f"a{LONE_SURROGATE}"})


def test_a_size_is_bounded() -> None:
    with pytest.raises(ValidationError) as refused:
        UploadRequestSchema().load({"content_type": "image/png", "size": 2**64})
    assert "size" in refused.value.messages


def test_the_envelope_encoder_writes_what_orjson_refuses() -> None:
    body = {"error": {"details": {"size": 2**100, "name": LONE_SURROGATE, "odd": object()}}}
    decoded = json.loads(envelope_text(body))
    assert decoded["error"]["details"]["size"] == 2**100
    assert decoded["error"]["details"]["name"] == LONE_SURROGATE


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\xff\xd8\xff\xe0", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"GIF89a", "image/gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", None),
        (b"<html>", None),
    ],
)
def test_magic_numbers_name_the_type(head: bytes, kind: str | None) -> None:
    assert content_type_from_magic(head) == kind
