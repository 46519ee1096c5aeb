"""Hostile input is ordinary input: lone surrogates, control characters and numbers beyond any
range, in every field of every operation, get a prompt 422 envelope naming the field; nothing
reaches a backend, and nobody else's request notices."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.integration.conftest import JWT_SECRET, Api

LONE_SURROGATE = "\ud800"
# A C0 control, escape (terminal sequences), DEL and a C1 control (NEL).
CONTROLS = ["\x00", "\x1b", "\x7f", "\x85"]
# Well under the retries a backend failure would go through (the issue: 503 after 4-5 s).
PROMPT_SECONDS = 2.0


def _json(body: Any) -> bytes:
    # The standard encoder writes a lone surrogate as the escape "\ud800": valid JSON that
    # decodes to a string no UTF-8 store can hold.
    return json.dumps(body).encode()


async def _send(api: Api, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    async with asyncio.timeout(PROMPT_SECONDS):
        return await api.call(
            method, path, data=None if body is None else _json(body), headers=headers, **kwargs
        )


UPLOAD_FIELDS = {
    "content_type": lambda bad: {"content_type": bad},
    "description": lambda bad: {"content_type": "image/png", "description": f"a{bad}b"},
    "tags": lambda bad: {"content_type": "image/png", "tags": ["ok", f"a{bad}b"]},
    "filename": lambda bad: {"content_type": "image/png", "filename": f"a{bad}b.png"},
    "method": lambda bad: {"content_type": "image/png", "method": f"PUT{bad}"},
    "checksum_sha256": lambda bad: {"content_type": "image/png", "checksum_sha256": bad * 44},
    "user_id": lambda bad: {"content_type": "image/png", "user_id": f"alice{bad}"},
}


@pytest.mark.parametrize(
    "bad", [LONE_SURROGATE, *CONTROLS], ids=["surrogate", "nul", "esc", "del", "nel"]
)
@pytest.mark.parametrize("field", sorted(UPLOAD_FIELDS))
async def test_an_unsafe_character_in_any_upload_field_is_a_prompt_422_naming_it(
    api: Api, field: str, bad: str
) -> None:
    status, payload, _ = await _send(api, "POST", "/images/upload", UPLOAD_FIELDS[field](bad))
    assert status == 422, payload
    assert payload["error"]["code"] == "validation_error"
    assert field in payload["error"]["details"]["fields"]
    status, page, _ = await api.call("GET", "/images")
    assert page["items"] == []


@pytest.mark.parametrize("field", ["tags", "description"])
async def test_a_lone_surrogate_in_a_patch_is_a_prompt_422_and_changes_nothing(
    api: Api, field: str
) -> None:
    upload = await api.upload_url(tags=["keep"], description="keep")
    body = {"tags": [LONE_SURROGATE]} if field == "tags" else {"description": LONE_SURROGATE}
    status, payload, _ = await _send(api, "PATCH", f"/images/{upload['image_id']}", body)
    assert status == 422, payload
    assert field in payload["error"]["details"]["fields"]
    _, record, _ = await api.call("GET", f"/images/{upload['image_id']}")
    assert (record["tags"], record["description"]) == (["keep"], "keep")


async def test_a_description_keeps_its_tabs_and_line_breaks(api: Api) -> None:
    upload = await api.upload_url(description="line one\n\tline two\r\n")
    _, record, _ = await api.call("GET", f"/images/{upload['image_id']}")
    assert record["description"] == "line one\n\tline two\r\n"


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/images", "tag"),
        ("/images", "cursor"),
        ("/images", "user_id"),
        ("/images", "start_date"),
        ("/images", "status"),
        ("/images/00000000-0000-4000-8000-000000000000/download", "variant"),
        ("/images/00000000-0000-4000-8000-000000000000/download", "format"),
    ],
)
@pytest.mark.parametrize(
    "bad", ["%ED%A0%80", "%C2%85", "%1B", "%FF"], ids=["surrogate", "nel", "esc", "not-utf8"]
)
async def test_an_unsafe_query_parameter_is_a_prompt_422_naming_it(
    api: Api, path: str, parameter: str, bad: str
) -> None:
    async with asyncio.timeout(PROMPT_SECONDS):
        status, payload, _ = await api.call("GET", f"{path}?{parameter}=a{bad}b")
    assert status == 422, payload
    assert parameter in payload["error"]["details"]["fields"]


@pytest.mark.parametrize("size", [2**64, 296308334625945798707878297600, 5 * 1024**4 + 1])
async def test_a_size_beyond_any_range_is_a_422_envelope(api: Api, size: int) -> None:
    status, payload, headers = await _send(
        api, "POST", "/images/upload", {"content_type": "image/jpeg", "size": size}
    )
    assert status == 422, payload
    assert headers["Content-Type"].startswith("application/json")
    assert "size" in payload["error"]["details"]["fields"]


async def test_an_unknown_field_named_with_a_lone_surrogate_is_a_json_envelope(api: Api) -> None:
    status, payload, headers = await _send(
        api, "POST", "/images/upload", {"content_type": "image/png", LONE_SURROGATE: 1}
    )
    assert status == 422
    assert headers["Content-Type"].startswith("application/json")
    assert list(payload["error"]["details"]["fields"]) == [LONE_SURROGATE]


@pytest.mark.parametrize("subject", [f"alice{LONE_SURROGATE}", "alice\x1b[31m", "alice\x85"])
async def test_a_token_whose_subject_is_not_text_is_refused(api: Api, subject: str) -> None:
    import jwt

    token = jwt.encode({"sub": subject, "exp": 2**31 - 1}, JWT_SECRET, algorithm="HS256")
    status, payload, _ = await api.call(
        "GET", "/images", user=None, headers={"Authorization": f"Bearer {token}"}
    )
    assert (status, payload["error"]["code"]) == (401, "invalid_token")


async def test_hostile_requests_in_flight_fail_nobody_else(api: Api) -> None:
    """12 hostile bodies among 120 users asking for upload URLs at once (the same group-committed
    writes): every bystander gets its URL, every hostile request its own 422."""
    hostile = [
        _send(api, "POST", "/images/upload", UPLOAD_FIELDS[field](LONE_SURROGATE), user=f"h{n}")
        for n, field in enumerate(["description", "tags", "filename"] * 4)
    ]
    bystanders = [
        api.call("POST", "/images/upload", user=f"user-{n}", json={"content_type": "image/png"})
        for n in range(120)
    ]
    answers = await asyncio.gather(*hostile, *bystanders)
    assert [status for status, _, _ in answers[:12]] == [422] * 12
    assert [status for status, _, _ in answers[12:]] == [201] * 120


async def test_a_subject_of_more_than_256_utf8_bytes_is_refused(api: Api) -> None:
    """64 emoji are 64 characters but 256 bytes, and 768 percent-encoded, in an S3 key of at
    most 1,024 bytes: the limit is on bytes."""
    import jwt

    fits, too_long = "\U0001f600" * 64, "\U0001f600" * 65
    answers = []
    for subject in (fits, too_long):
        token = jwt.encode({"sub": subject, "exp": 2**31 - 1}, JWT_SECRET, algorithm="HS256")
        headers = {"Authorization": f"Bearer {token}"}
        answers.append((await api.call("GET", "/images", user=None, headers=headers))[0])
    assert answers == [200, 401]
    status, payload, _ = await api.call("GET", f"/images?user_id={too_long}", admin=True)
    assert status == 422
    assert "user_id" in payload["error"]["details"]["fields"]
