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

from image_service.embedded import free_port
from tests.conftest import JWT_SECRET, Api, MakeApi


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
        body = {"sub": "alice", "exp": now() + 600, **claims}
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
    api = await make_api(jwt_jwks_url=url)
    for _ in range(5):
        assert await _status(api, provider.token("key-1")) == (200, None)
    assert provider.fetches == 1


async def test_a_rotated_key_is_fetched_once(
    make_api: MakeApi, idp: tuple[IdentityProvider, str]
) -> None:
    provider, url = idp
    api = await make_api(jwt_jwks_url=url, jwks_min_refresh_seconds=1)
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
    api = await make_api(jwt_jwks_url=url, jwks_min_refresh_seconds=60)
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
    api = await make_api(jwt_jwks_url=url)
    pem = provider.public_pem("key-1")
    header = jwt.utils.base64url_encode(
        json.dumps({"alg": "HS256", "typ": "JWT", "kid": "key-1"}).encode()
    )
    payload = jwt.utils.base64url_encode(json.dumps({"sub": "alice", "exp": now() + 600}).encode())
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
    api = await make_api(jwt_jwks_url=url)
    impostor = IdentityProvider()
    impostor.add_key("key-1")  # same kid, different key
    assert await _status(api, impostor.token("key-1")) == (401, "invalid_token")
    no_kid = jwt.encode(
        {"sub": "alice", "exp": now() + 600}, provider.keys["key-1"], algorithm="RS256"
    )
    assert await _status(api, no_kid) == (401, "invalid_token")


async def test_not_yet_valid_tokens_are_refused(api: Api) -> None:
    early = jwt.encode(
        {"sub": "alice", "exp": now() + 600, "nbf": now() + 300}, JWT_SECRET, algorithm="HS256"
    )
    assert await _status(api, early) == (401, "invalid_token")


async def test_an_unreachable_jwks_is_a_503(make_api: MakeApi) -> None:
    api = await make_api(jwt_jwks_url=f"http://127.0.0.1:{free_port()}/jwks.json")
    provider = IdentityProvider()
    provider.add_key("key-1")
    status, body, headers = await api.call(
        "GET", "/images", user=None, headers=_bearer(provider.token("key-1"))
    )
    assert (status, body["error"]["code"]) == (503, "backend_unavailable")
    assert headers["Retry-After"] == "1"
    # HS256 tokens keep working while the IdP is down.
    status, _, _ = await api.call("GET", "/images")
    assert status == 200
