"""Bearer tokens beyond the basics: RS256 from a JWKS served by a real local server, key
rotation, bounded refreshes, algorithm confusion, not-yet-valid tokens."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from image_service.programs.app import create_app
from image_service.programs.embedded import free_port
from image_service.settings import Settings, SettingsError
from tests.integration.conftest import JWT_SECRET, Api, MakeApi

# The audience this deployment's tokens carry: required with a JWKS URL.
AUDIENCE = "https://images.example.test"


def now() -> int:
    return int(time.time())


@dataclass
class IdentityProvider:
    """A JWKS endpoint whose keys the test can rotate, counting how often it is asked."""

    keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    fetches: int = 0

    def add_key(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def token(self, kid: str, **claims: Any) -> str:
        body = {"sub": "alice", "exp": now() + 600, "aud": AUDIENCE, **claims}
        return jwt.encode(body, self.keys[kid], algorithm="RS256", headers={"kid": kid})

    def public_pem(self, kid: str) -> bytes:
        return (
            self.keys[kid]
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    async def handle(self, request: web.Request) -> web.Response:
        self.fetches += 1
        jwks = []
        for kid, key in self.keys.items():
            jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
            jwks.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return web.json_response({"keys": jwks})


@pytest.fixture
async def idp(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> tuple[IdentityProvider, str]:
    provider = IdentityProvider()
    provider.add_key("key-1")
    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", provider.handle)
    server = await aiohttp_server(app)
    return provider, str(server.make_url("/.well-known/jwks.json"))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _status(api: Api, token: str) -> tuple[int, str | None]:
    status, body, _ = await api.call("GET", "/images", user=None, headers=_bearer(token))
    return status, (body or {}).get("error", {}).get("code")


async def test_rs256_tokens_from_the_jwks_are_accepted_and_keys_cached(
    make_api: MakeApi, idp: tuple[IdentityProvider, str]
) -> None:
    provider, url = idp
    api = await make_api(jwt_jwks_url=url, jwt_audience=AUDIENCE)
    for _ in range(5):
        assert await _status(api, provider.token("key-1")) == (200, None)
    assert provider.fetches == 1


async def test_a_rotated_key_is_fetched_once(
    make_api: MakeApi, idp: tuple[IdentityProvider, str]
) -> None:
    provider, url = idp
    api = await make_api(jwt_jwks_url=url, jwt_audience=AUDIENCE, jwks_min_refresh_seconds=1)
    assert await _status(api, provider.token("key-1")) == (200, None)
    provider.add_key("key-2")
    await asyncio.sleep(1.1)  # the refresh bound is wall-clock time; nothing to await instead
    assert await _status(api, provider.token("key-2")) == (200, None)
    assert await _status(api, provider.token("key-2")) == (200, None)
    assert provider.fetches == 2


async def test_unknown_kids_cannot_make_the_service_hammer_the_idp(
    make_api: MakeApi, idp: tuple[IdentityProvider, str]
) -> None:
    provider, url = idp
    api = await make_api(jwt_jwks_url=url, jwt_audience=AUDIENCE, jwks_min_refresh_seconds=60)
    assert await _status(api, provider.token("key-1")) == (200, None)
    stranger = IdentityProvider()
    for index in range(20):
        stranger.add_key(f"made-up-{index}")
        assert await _status(api, stranger.token(f"made-up-{index}")) == (401, "invalid_token")
    assert provider.fetches == 1, "no refresh within the minimum interval"


async def test_algorithm_confusion_is_refused(
    make_api: MakeApi, idp: tuple[IdentityProvider, str]
) -> None:
    """An HS256 token whose HMAC key is the IdP's public key: valid only to a naive verifier."""
    provider, url = idp
    api = await make_api(jwt_jwks_url=url, jwt_audience=AUDIENCE)
    pem = provider.public_pem("key-1")
    header = jwt.utils.base64url_encode(
        json.dumps({"alg": "HS256", "typ": "JWT", "kid": "key-1"}).encode()
    )
    claims = {"sub": "alice", "exp": now() + 600, "aud": AUDIENCE}
    payload = jwt.utils.base64url_encode(json.dumps(claims).encode())
    signing_input = header + b"." + payload
    signature = jwt.utils.base64url_encode(hmac.new(pem, signing_input, hashlib.sha256).digest())
    forged = (signing_input + b"." + signature).decode()
    assert await _status(api, forged) == (401, "invalid_token")


async def test_rs256_is_refused_without_a_jwks(api: Api) -> None:
    provider = IdentityProvider()
    provider.add_key("key-1")
    assert await _status(api, provider.token("key-1")) == (401, "invalid_token")


async def test_rs256_with_a_wrong_key_or_no_kid_is_refused(
    make_api: MakeApi, idp: tuple[IdentityProvider, str]
) -> None:
    provider, url = idp
    api = await make_api(jwt_jwks_url=url, jwt_audience=AUDIENCE)
    impostor = IdentityProvider()
    impostor.add_key("key-1")  # same kid, different key
    assert await _status(api, impostor.token("key-1")) == (401, "invalid_token")
    no_kid = jwt.encode(
        {"sub": "alice", "exp": now() + 600, "aud": AUDIENCE},
        provider.keys["key-1"],
        algorithm="RS256",
    )
    assert await _status(api, no_kid) == (401, "invalid_token")


async def test_not_yet_valid_tokens_are_refused(api: Api) -> None:
    early = jwt.encode(
        {"sub": "alice", "exp": now() + 600, "nbf": now() + 300}, JWT_SECRET, algorithm="HS256"
    )
    assert await _status(api, early) == (401, "invalid_token")


async def test_an_unreachable_jwks_is_a_503(make_api: MakeApi) -> None:
    api = await make_api(
        jwt_jwks_url=f"http://127.0.0.1:{free_port()}/jwks.json", jwt_audience=AUDIENCE
    )
    provider = IdentityProvider()
    provider.add_key("key-1")
    status, body, headers = await api.call(
        "GET", "/images", user=None, headers=_bearer(provider.token("key-1"))
    )
    assert (status, body["error"]["code"]) == (503, "backend_unavailable")
    assert headers["Retry-After"] == "1"
    # HS256 tokens keep working while the IdP is down.
    ours = jwt.encode(
        {"sub": "alice", "exp": now() + 600, "aud": AUDIENCE}, JWT_SECRET, algorithm="HS256"
    )
    assert await _status(api, ours) == (200, None)


async def test_a_token_the_idp_minted_for_another_api_is_refused(
    make_api: MakeApi, idp: tuple[IdentityProvider, str]
) -> None:
    """The same identity provider, the same keys, `admin` in its scope: for another API."""
    provider, url = idp
    api = await make_api(jwt_jwks_url=url, jwt_audience=AUDIENCE)
    elsewhere = provider.token("key-1", aud="https://billing.example.test", scope="admin")
    assert await _status(api, elsewhere) == (401, "invalid_token")
    unaddressed = jwt.encode(
        {"sub": "alice", "exp": now() + 600, "scope": "admin"},
        provider.keys["key-1"],
        algorithm="RS256",
        headers={"kid": "key-1"},
    )
    assert await _status(api, unaddressed) == (401, "invalid_token")
    assert await _status(api, provider.token("key-1", scope="admin")) == (200, None)


async def test_a_jwks_without_an_audience_does_not_start(
    idp: tuple[IdentityProvider, str],
) -> None:
    _, url = idp
    settings = Settings(jwt_secret=JWT_SECRET, jwt_jwks_url=url)
    runner = web.AppRunner(create_app(settings))
    with pytest.raises(SettingsError, match="IMAGE_SERVICE_JWT_AUDIENCE"):
        await runner.setup()
    await runner.cleanup()


async def test_any_audience_is_accepted_only_when_the_operator_says_so_by_name(
    make_api: MakeApi, idp: tuple[IdentityProvider, str]
) -> None:
    provider, url = idp
    api = await make_api(jwt_jwks_url=url, jwt_any_audience=True)
    assert await _status(api, provider.token("key-1", aud="https://other.example.test")) == (
        200,
        None,
    )


async def test_the_jwt_secret_rotates_under_traffic(make_api: MakeApi) -> None:
    """A rolling rotation: replicas on the old key, replicas with the new key and the old one
    as previous, then only the new. Requests signed either way are in flight throughout; a
    cursor issued under the old key keeps paging on the rotating replicas."""
    new_secret = "rotated-secret-also-long-enough-for-hmac-0123456789abcdef"
    old = await make_api()
    for n in range(3):
        await old.upload_url(tags=[f"t{n}"])
    rotating = await make_api(replica_of=old, jwt_secret=new_secret, jwt_previous_secret=JWT_SECRET)
    old_token = jwt.encode({"sub": "alice", "exp": now() + 600}, JWT_SECRET, algorithm="HS256")
    new_token = jwt.encode({"sub": "alice", "exp": now() + 600}, new_secret, algorithm="HS256")
    _, first, _ = await old.call("GET", "/images", params={"status": "pending", "limit": "1"})
    outcomes = await asyncio.gather(
        *(
            _status(api, token)
            for _ in range(10)
            for api in (old, rotating)
            for token in (old_token, new_token)
        )
    )
    # 10 rounds of (old replica: old token, new token; rotating replica: old, new).
    assert outcomes == [(200, None), (401, "invalid_token"), (200, None), (200, None)] * 10
    status, page, _ = await rotating.call(
        "GET",
        "/images",
        user=None,
        headers=_bearer(new_token),
        params={"status": "pending", "limit": "1", "cursor": first["next_cursor"]},
    )
    assert status == 200, page
    assert len(page["items"]) == 1

    rotated = await make_api(replica_of=old, jwt_secret=new_secret)
    assert await _status(rotated, new_token) == (200, None)
    assert await _status(rotated, old_token) == (401, "invalid_token")
