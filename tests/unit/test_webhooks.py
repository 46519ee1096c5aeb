"""Standard Webhooks signatures, the public-address rule for callbacks, and the retry schedule:
pure functions, no server."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from image_service.client.webhooks import WebhookVerificationError, sign, verify
from image_service.domain.callbacks import (
    callback_signing_key,
    privately_reachable,
    public_address,
)
from image_service.worker.webhooks import retry_delay

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks specification's example
BODY = b'{"test": 2432232314}'


def test_the_signature_is_the_specifications():
    # Standard Webhooks' own test vector (msg_p5jXN8AQM9LWM0D4loKWxJek, 1614265330).
    assert (
        sign(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, BODY)
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_a_plain_secret_signs_with_its_bytes():
    expected = hmac.new(b"a" * 24, b"msg_1.10." + BODY, hashlib.sha256).digest()
    assert sign("a" * 24, "msg_1", 10, BODY) == "v1," + base64.b64encode(expected).decode()


def _headers(
    message_id: str = "msg_1", timestamp: int = 1000, body: bytes = BODY
) -> dict[str, str]:
    return {
        "Webhook-Id": message_id,
        "Webhook-Timestamp": str(timestamp),
        "Webhook-Signature": "v1,bm90IHRoaXMgb25l " + sign(SECRET, message_id, timestamp, body),
    }


def test_verify_accepts_a_fresh_genuine_event_among_several_signatures():
    assert verify(SECRET, _headers(), BODY, now=1100) == {"test": 2432232314}


@pytest.mark.parametrize(
    ("headers", "body", "now"),
    [
        (_headers(), BODY + b" ", 1000),  # another body
        (_headers(message_id="msg_2") | {"Webhook-Id": "msg_1"}, BODY, 1000),  # another id
        (_headers(), BODY, 1000 + 301),  # too old: a replay
        (_headers(), BODY, 1000 - 301),  # from the future
        ({"webhook-id": "msg_1", "webhook-timestamp": "x", "webhook-signature": "v1,"}, BODY, 0),
        ({}, BODY, 1000),
    ],
)
def test_verify_refuses_anything_else(headers: dict[str, str], body: bytes, now: int) -> None:
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, headers, body, now=now)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", True),
        ("127.0.0.1", False),
        ("127.255.255.254", False),
        ("10.0.0.1", False),
        ("172.31.255.255", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("255.255.255.255", False),
        ("224.0.0.251", False),
        ("::1", False),
        ("::", False),
        ("fe80::1%eth0", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:93.184.215.14", True),
        ("2002:7f00:1::", False),  # 6to4 around 127.0.0.1
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo
        ("64:ff9b::7f00:1", False),  # NAT64 to 127.0.0.1
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 to the metadata endpoint
        ("64:ff9b::10.0.0.1", False),
        ("64:ff9b::5db8:d70e", True),  # NAT64 to a public address
        ("64:ff9b:1::7f00:1", False),  # NAT64's local-use prefix: never
        ("::127.0.0.1", False),  # IPv4-compatible (deprecated): never
        ("::93.184.215.14", False),
        ("not an address", False),
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert public_address(address) is public


@pytest.mark.parametrize(
    ("address", "reachable"),
    [
        ("10.0.0.1", True),
        ("127.0.0.1", True),
        ("::1", True),
        ("93.184.215.14", True),
        ("169.254.169.254", False),  # instance metadata
        ("169.254.170.2", False),  # ECS task metadata
        ("fd00:ec2::254", False),  # EC2's metadata over IPv6
        ("fe80::1", False),
        ("::ffff:169.254.169.254", False),
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 to the metadata endpoint
        ("not an address", False),
    ],
)
def test_allowing_private_addresses_never_allows_metadata(address: str, reachable: bool) -> None:
    assert privately_reachable(address) is reachable


def test_retries_back_off_to_hourly():
    assert [retry_delay(n) for n in range(1, 9)] == [5, 30, 120, 600, 1800, 3600, 3600, 3600]


def test_callback_keys_are_per_owner_and_standard() -> None:
    """Derived per owner from a master key: distinct, stable, and in the form any Standard
    Webhooks library takes (whsec_ + base64 of 32 bytes)."""
    master = "whsec_" + base64.b64encode(b"m" * 32).decode()
    alice, bob = callback_signing_key(master, "alice"), callback_signing_key(master, "bob")
    assert alice != bob
    assert alice == callback_signing_key(master, "alice")
    assert alice != callback_signing_key("a-plain-master-secret-of-24-chars", "alice")
    assert master not in {alice, bob}
    assert len(base64.b64decode(alice.removeprefix("whsec_"), validate=True)) == 32
