"""Every signed URL has one spelling. Each URL the service issues is changed segment by segment
(other encodings, padding, leading zeros, huge numbers, another owner's segment): the spelling
it was issued with is accepted, and every other one gets a prompt 4xx.

Rendition URLs are checked by the service; upload, part and download URLs by S3, so those run
against LocalStack's S3, which checks SigV4 as S3 does."""

from __future__ import annotations

import base64
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import pytest
from yarl import URL

from image_service.domain.models import MIN_PART_BYTES
from tests import images
from tests.integration.conftest import Api, MakeApi
from tests.localstack import ACCESS_KEY, SECRET_KEY


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def _rendition_spellings(url: str) -> dict[str, str]:
    """Every other spelling of a rendition URL, by what was changed."""
    origin, path = url.split("/r/", 1)
    owner, image_id, edition, spec, expires, signature = path.split("/")
    bob = _b64("bob").rstrip("=")

    def built(**parts: str) -> str:
        segments = {
            "owner": owner,
            "image_id": image_id,
            "edition": edition,
            "spec": spec,
            "expires": expires,
            "signature": signature,
            **parts,
        }
        return f"{origin}/r/" + "/".join(segments.values())

    last_bits = owner[:-1] + ("B" if owner[-1] != "B" else "C")  # same bytes, other padding bits
    return {
        "owner padded": built(owner=_b64("alice")),
        "owner in standard base64": built(owner=base64.b64encode(b"alice?>").decode()),
        "owner with stray trailing bits": built(owner=last_bits),
        "owner percent-encoded": built(owner=quote(owner, safe="").replace("Y", "%59")),
        "another owner": built(owner=bob),
        "empty owner": built(owner=""),
        "image id in capitals": built(image_id=image_id.upper()),
        "edition in capitals": built(edition=edition.upper()),
        "edition left out": built(edition=""),
        "edition lengthened": built(edition=edition + "0"),
        "spec with a leading zero": built(spec=spec.replace("w256", "w0256")),
        "spec in capitals": built(spec=spec.upper()),
        "expiry with a leading zero": built(expires="0" + expires),
        "expiry with a plus": built(expires="+" + expires),
        "expiry of 4301 digits": built(expires="9" * 4301),
        "expiry of 13 digits": built(expires="1" + expires.rjust(12, "0")),
        "negative expiry": built(expires="-" + expires),
        "expiry in other digits": built(expires="".join(chr(0x0660 + int(d)) for d in expires)),
        "signature padded": built(signature=signature + "="),
        "signature in standard base64": built(
            signature=signature.replace("-", "+").replace("_", "/")
        ),
        "signature truncated": built(signature=signature[:-1]),
        "signature in capitals": built(signature=signature.upper()),
        "signature lengthened": built(signature=signature + "A"),
        "signature percent-encoded": built(
            signature=signature[:-1] + "%" + f"{ord(signature[-1]):02X}"
        ),
    }


async def test_a_rendition_url_has_exactly_one_spelling(api: Api) -> None:
    _, status, image = await api.upload(images.jpeg(320, 240))
    assert status == 200
    status, body, _ = await api.call(
        "GET", f"/images/{image['image_id']}/render", params={"w": "256"}
    )
    url = body["url"]
    async with api.http.get(url) as response:
        assert response.status == 200
    for change, spelling in _rendition_spellings(url).items():
        if spelling == url:
            continue  # a change that happens to leave this URL as it was
        async with api.http.get(URL(spelling, encoded=True)) as response:  # sent as spelt
            assert 400 <= response.status < 500, (change, response.status)
            if response.content_type == "application/json":
                error = (await response.json())["error"]
                assert error["code"] in {"invalid_signature", "url_expired", "not_found"}, change
    samples = await api.metrics()
    assert not any(
        name == "image_service_http_requests_total"
        and dict(labels).get("status", "").startswith("5")
        for (name, labels) in samples
    )


async def test_a_cursor_has_exactly_one_spelling(api: Api) -> None:
    for _ in range(3):
        await api.upload_url()
    _, page, _ = await api.call("GET", "/images", params={"limit": "1"})
    cursor = page["next_cursor"]
    assert (await api.call("GET", "/images", params={"limit": "1", "cursor": cursor}))[0] == 200
    body, mac = cursor.split(".")
    for spelling in (
        f"{body}=.{mac}",
        f"{body}.{mac}=",
        f"{body}.{mac}A",
        f"{body[:-1]}{'B' if body[-1] != 'B' else 'C'}.{mac}",
        f"{body}.{mac[:-1]}{'B' if mac[-1] != 'B' else 'C'}",
        cursor.replace("-", "+").replace("_", "/"),
        cursor + ".",
    ):
        if spelling == cursor:
            continue
        status, error, _ = await api.call(
            "GET", "/images", params={"limit": "1", "cursor": spelling}
        )
        assert (status, error["error"]["code"]) == (422, "invalid_cursor"), spelling


# -- S3's URLs, against an S3 that checks them -----------------------------------------------------


@pytest.fixture
async def on_localstack(
    monkeypatch: pytest.MonkeyPatch, localstack_endpoint: str, make_api: MakeApi
) -> Api:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", localstack_endpoint)
    return await make_api()


def _query_spellings(url: str) -> dict[str, str]:
    """Other spellings of a SigV4 presigned URL's query, one change each."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    values = dict(query)

    def with_query(pairs: list[tuple[str, str]]) -> str:
        return urlunsplit(parts._replace(query=urlencode(pairs, safe="/")))

    def changed(name: str, value: str) -> str:
        if values[name] == value:
            return url  # no change (one signed header reordered): skipped
        return with_query([(k, value if k == name else v) for k, v in query])

    signature = values["X-Amz-Signature"]
    expires = values["X-Amz-Expires"]
    other_owner = parts.path.replace("/alice/", "/bob/")
    return {
        "expiry with a leading zero": changed("X-Amz-Expires", "0" + expires),
        "expiry of 4301 digits": changed("X-Amz-Expires", "9" * 4301),
        "negative expiry": changed("X-Amz-Expires", "-" + expires),
        "signature in capitals": changed("X-Amz-Signature", signature.upper()),
        "signature truncated": changed("X-Amz-Signature", signature[:-1]),
        "signature lengthened": changed("X-Amz-Signature", signature + "0"),
        "date a second later": changed(
            "X-Amz-Date",
            values["X-Amz-Date"][:-3] + f"{(int(values['X-Amz-Date'][-3:-1]) + 1) % 60:02d}Z",
        ),
        "signed headers reordered": changed(
            "X-Amz-SignedHeaders", ";".join(reversed(values["X-Amz-SignedHeaders"].split(";")))
        ),
        "credential in capitals": changed("X-Amz-Credential", values["X-Amz-Credential"].upper()),
        "a parameter added": with_query([*query, ("x-id", "PutObject")]),
        "a parameter twice": with_query([*query, ("X-Amz-Expires", expires)]),
        "another owner's key": urlunsplit(parts._replace(path=other_owner)),
        "key percent-encoded": urlunsplit(
            parts._replace(path=parts.path.replace("/", "%2F", 2).replace("%2F", "/", 1))
        ),
    }


# LocalStack reads the first of a repeated query parameter, so a URL with one parameter given
# twice, the same value both times, goes through it. Reported here, not hidden; every other
# spelling is refused.
LOCALSTACK_ALLOWS = {"a parameter twice"}


async def _s3_status(api: Api, method: str, url: str, headers: dict[str, str], data: bytes) -> int:
    spelt = URL(url, encoded=True)
    async with api.http.request(method, spelt, headers=headers, data=data or None) as response:
        return response.status


async def _every_other_spelling_is_refused(
    api: Api, method: str, url: str, headers: dict[str, str], data: bytes
) -> list[str]:
    accepted = []
    for change, spelling in _query_spellings(url).items():
        if spelling == url:
            continue
        # (LocalStack answers a 4301-digit X-Amz-Expires with a 500: a refusal all the same.)
        status = await _s3_status(api, method, spelling, headers, data)
        if status < 400:
            accepted.append(change)
    return accepted


async def test_upload_part_and_download_urls_have_one_spelling_on_s3(on_localstack: Api) -> None:
    api = on_localstack
    data = images.jpeg(64, 48)
    upload = await api.upload_url(size=len(data))
    headers = {k: v for k, v in upload["headers"].items() if k != "Content-Length"}
    accepted = await _every_other_spelling_is_refused(
        api, "PUT", upload["upload_url"], headers, data
    )
    assert set(accepted) <= LOCALSTACK_ALLOWS, (
        f"S3 took other spellings of an upload URL: {accepted}"
    )
    # The spelling LocalStack took has stored these bytes already: If-None-Match refuses more.
    assert await api.send_to_s3(upload, data) == (412 if accepted else 200)

    multipart = await api.upload_url(
        method="MULTIPART", size=MIN_PART_BYTES + 10, part_size=MIN_PART_BYTES
    )
    part = multipart["parts"][1]
    part_headers = {k: v for k, v in part["headers"].items() if k != "Content-Length"}
    accepted = await _every_other_spelling_is_refused(
        api, "PUT", part["url"], part_headers, b"x" * part["size"]
    )
    assert set(accepted) <= LOCALSTACK_ALLOWS, f"S3 took other spellings of a part URL: {accepted}"

    assert (await api.call("POST", f"/images/{upload['image_id']}/complete"))[0] == 200
    assert (await api.processed(upload["image_id"]))["status"] == "ready"
    _, download, _ = await api.call("GET", f"/images/{upload['image_id']}/download")
    accepted = await _every_other_spelling_is_refused(api, "GET", download["download_url"], {}, b"")
    assert set(accepted) <= LOCALSTACK_ALLOWS, f"other spellings of a download URL: {accepted}"
    async with api.http.get(download["download_url"]) as response:
        assert response.status == 200
