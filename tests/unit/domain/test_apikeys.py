"""API keys over a fake store: made once, verified by hash in constant time, remembered for the
stated bound and no longer, expiring, scoped, and their uses written once a minute at most."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from image_service.domain.apikeys import (
    ApiKeys,
    KeyRefused,
    require_scope,
    user_token_only,
)
from image_service.domain.errors import Conflict, InvalidRequest, Unauthenticated
from image_service.domain.models import Principal
from tests.fakes import FakeApiKeyStore
from tests.unit.domain.conftest import Clock

NOW = Clock().now
ALICE = Principal("alice")


def _keys(cache_seconds: float = 30) -> tuple[ApiKeys, FakeApiKeyStore, Clock]:
    store, clock = FakeApiKeyStore(), Clock()
    return ApiKeys(store, cache_seconds=cache_seconds, clock=clock), store, clock


async def test_a_key_stands_for_its_owner_with_its_scopes_only() -> None:
    keys, store, _ = _keys()
    made, token = await keys.create(ALICE, name="ci", scopes=["images:read"], expires_at=None)
    assert token.startswith(f"isk_{made.key_id}_")
    assert token.split("_", 2)[2] not in str(store.keys)  # only its hash is kept
    principal = await keys.verify(token)
    assert (principal.user_id, principal.is_admin, principal.key_id) == (
        "alice",
        False,
        made.key_id,
    )
    require_scope(principal, "images:read")
    with pytest.raises(KeyRefused) as refused:
        require_scope(principal, "images:delete")
    assert (refused.value.code, refused.value.details["scope"]) == (
        "missing_scope",
        "images:delete",
    )
    with pytest.raises(KeyRefused) as refused:
        user_token_only(principal)
    assert refused.value.code == "user_token_required"
    require_scope(ALICE, "images:delete")  # a user token has every scope


async def test_a_key_cannot_make_keys() -> None:
    keys, _, _ = _keys()
    _, token = await keys.create(ALICE, name="ci", scopes=["images:write"], expires_at=None)
    with pytest.raises(KeyRefused):
        await keys.create(
            await keys.verify(token), name="x", scopes=["images:read"], expires_at=None
        )


async def test_lookups_are_remembered_for_the_bound_and_no_longer() -> None:
    keys, store, _ = _keys(cache_seconds=0.2)
    made, token = await keys.create(ALICE, name="ci", scopes=["images:read"], expires_at=None)
    for _ in range(5):
        await keys.verify(token)
    assert store.lookups == 1
    del store.keys[made.key_id]  # revoked by another replica
    await keys.verify(token)  # still remembered here
    await asyncio.sleep(0.25)
    with pytest.raises(Unauthenticated):
        await keys.verify(token)


async def test_a_revoke_here_is_at_once_and_a_wrong_secret_never_passes() -> None:
    keys, _, _ = _keys()
    made, token = await keys.create(ALICE, name="ci", scopes=["images:read"], expires_at=None)
    _, other_token = await keys.create(ALICE, name="x", scopes=["images:read"], expires_at=None)
    forged = f"isk_{made.key_id}_{other_token[len('isk_') + 17 :]}"
    with pytest.raises(Unauthenticated):
        await keys.verify(forged)
    await keys.verify(token)
    await keys.revoke(ALICE, made.key_id)
    with pytest.raises(Unauthenticated):
        await keys.verify(token)
    await keys.verify(other_token)


async def test_a_key_expires_and_a_past_expiry_is_refused() -> None:
    keys, _, clock = _keys()
    expires = NOW + timedelta(days=1)
    _, token = await keys.create(ALICE, name="ci", scopes=["images:read"], expires_at=expires)
    assert (await keys.verify(token)).expires_at == expires.timestamp()
    clock.now = expires
    with pytest.raises(Unauthenticated) as refused:
        await keys.verify(token)
    assert refused.value.code == "token_expired"
    with pytest.raises(InvalidRequest):
        await keys.create(ALICE, name="ci", scopes=["images:read"], expires_at=NOW)


async def test_scopes_are_known_ones_and_keys_are_bounded_per_owner() -> None:
    keys, _, _ = _keys()
    with pytest.raises(InvalidRequest):
        await keys.create(ALICE, name="x", scopes=["images:admin"], expires_at=None)
    with pytest.raises(InvalidRequest):
        await keys.create(ALICE, name="x", scopes=[], expires_at=None)
    for _ in range(50):
        await keys.create(ALICE, name="x", scopes=["images:read"], expires_at=None)
    with pytest.raises(Conflict):
        await keys.create(ALICE, name="x", scopes=["images:read"], expires_at=None)


async def test_uses_are_written_once_a_minute_at_most() -> None:
    keys, store, clock = _keys()
    made, token = await keys.create(ALICE, name="ci", scopes=["images:read"], expires_at=None)
    await keys.verify(token)
    await keys.write_uses()
    assert store.keys[made.key_id].key.last_used_at == NOW
    clock.now = NOW + timedelta(seconds=5)
    await keys.verify(token)
    await keys.write_uses()  # written a moment ago: not again yet
    assert store.keys[made.key_id].key.last_used_at == NOW
    assert keys.with_last_use(store.keys[made.key_id].key).last_used_at == clock.now
    await keys.write_uses(at_exit=True)
    assert store.keys[made.key_id].key.last_used_at == clock.now
