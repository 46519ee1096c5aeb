"""Signed webhooks, end to end: events from the API and the worker, queued on SQS (moto),
delivered by the worker to a real HTTP receiver on loopback, verified with the client's own
verifier; retries, dead letters, redirects, and where a per-upload callback_url may point."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
import standardwebhooks

from image_service.client.webhooks import WebhookVerificationError, standard_secret, verify
from image_service.domain.callbacks import callback_signing_key
from image_service.storage.provision import dead_letter_queue_name
from tests import images
from tests.faults import FaultProxy, operation
from tests.integration.conftest import Api, MakeApi, emulator_client
from tests.integration.receivers import DELIVERY_SECONDS, SECRET, Receiver
from tests.processes import run_command


async def _hooked(
    make_api: MakeApi, receiver: Receiver, path: str = "/hooks", **settings: Any
) -> Api:
    return await make_api(webhook_url=receiver.url + path, webhook_secret=SECRET, **settings)


def _verified(request: tuple[str, dict[str, str], bytes]) -> dict[str, Any]:
    _, headers, body = request
    event: dict[str, Any] = verify(SECRET, headers, body)
    assert headers["webhook-id"].startswith("msg_")
    return event


async def test_every_kind_of_event_reaches_the_webhook_signed(
    make_api: MakeApi, receiver: Receiver
) -> None:
    api = await _hooked(make_api, receiver)
    upload, status, _ = await api.upload(images.jpeg(), tags=["hooked"])
    assert status == 200
    (event,) = await receiver.until(1)
    assert event["type"] == "image.ready"
    assert event["data"]["image_id"] == upload["image_id"]
    assert (event["data"]["status"], event["data"]["tags"]) == ("ready", ["hooked"])
    assert _verified(receiver.requests[0]) == event

    refused = await api.upload_url(content_type="image/png")
    await api.send_to_s3(refused, images.HTML, **{"Content-Type": "image/png"})
    status, _, _ = await api.call("POST", f"/images/{refused['image_id']}/complete")
    assert status == 422
    await api.call("DELETE", f"/images/{upload['image_id']}", params={"permanent": "true"})
    events = await receiver.until(3)
    assert events[1]["data"]["reason"] == "content_mismatch"
    assert [(e["type"], e["data"]["image_id"]) for e in events[1:]] == [
        ("image.rejected", refused["image_id"]),
        ("image.deleted", upload["image_id"]),
    ]
    assert all(_verified(request) for request in receiver.requests)
    assert len({headers["webhook-id"] for _, headers, _ in receiver.requests}) == 3
    samples = await api.metrics()
    key = ("image_service_webhooks_total", (("event", "image.ready"), ("outcome", "delivered")))
    assert samples[key] == 1


async def test_a_quarantined_image_is_an_event(make_api: MakeApi, receiver: Receiver) -> None:
    api = await _hooked(make_api, receiver, moderation_webhook_url=receiver.url + "/moderate")
    upload, _, image = await api.upload(images.png(), content_type="image/png")
    assert image["status"] == "quarantined"
    (event,) = await receiver.until(1)
    assert (event["type"], event["data"]["image_id"]) == ("image.quarantined", upload["image_id"])
    assert event["data"]["reason"] == "moderation: test"


async def test_a_failed_delivery_is_retried_with_the_same_id(
    make_api: MakeApi, receiver: Receiver
) -> None:
    api = await _hooked(make_api, receiver)
    receiver.answers = [503]
    await api.upload(images.gif(), content_type="image/gif")
    first, second = await receiver.until(2)
    assert first == second
    (_, one, _), (_, two, _) = receiver.requests
    assert one["webhook-id"] == two["webhook-id"]  # a receiver de-duplicates by it
    # Each attempt is signed afresh, after the first step of the backoff (5 s).
    assert int(two["webhook-timestamp"]) - int(one["webhook-timestamp"]) >= 4
    assert all(_verified(request) for request in receiver.requests)
    samples = await api.metrics()
    outcomes = {
        labels[1][1]: value
        for (name, labels), value in samples.items()
        if name == "image_service_webhooks_total" and labels[0] == ("event", "image.ready")
    }
    assert outcomes == {"queued": 1, "retried": 1, "delivered": 1}


async def test_a_webhook_failing_past_its_maximum_age_is_dead_lettered(
    make_api: MakeApi, receiver: Receiver, moto_endpoint: str
) -> None:
    # The age a failing event is retried for, shortened from a day: this test's subject.
    api = await _hooked(make_api, receiver, webhook_max_age_seconds=1)
    receiver.answers = [500, 500, 500]
    upload, _, _ = await api.upload(images.jpeg())
    await receiver.until(2)  # the first try, and one more after the 5 s step, past 1 s of age
    sqs = emulator_client("sqs", moto_endpoint)
    dead = sqs.get_queue_url(QueueName=dead_letter_queue_name(api.settings.queue_name))["QueueUrl"]
    async with asyncio.timeout(DELIVERY_SECONDS):
        # Another process's queue: no event to await, asked until the message is there.
        while not (found := sqs.receive_message(QueueUrl=dead).get("Messages")):  # noqa: ASYNC110
            await asyncio.sleep(0.2)
    job = json.loads(found[0]["Body"])
    assert (job["type"], job["attempt"], job["last_failure"]) == ("webhook", 2, "HTTP 500")
    assert job["body"]["data"]["image_id"] == upload["image_id"]
    samples = await api.metrics()
    key = ("image_service_webhooks_total", (("event", "image.ready"), ("outcome", "dead_lettered")))
    assert samples[key] == 1
    assert len(receiver.events()) == 2  # no third try


def _webhooks_counted(samples: Any, event: str, outcome: str) -> float:
    key = ("image_service_webhooks_total", (("event", event), ("outcome", outcome)))
    return float(samples.get(key, 0))


async def test_a_webhook_sqs_refuses_stays_in_the_outbox_until_the_relay_queues_it(
    make_api: MakeApi, receiver: Receiver, moto_endpoint: str
) -> None:
    async with FaultProxy(moto_endpoint) as proxy:
        api = await _hooked(make_api, receiver, environment={"AWS_ENDPOINT_URL_SQS": proxy.url})
        refused = await api.upload_url(content_type="image/png")
        await api.send_to_s3(refused, images.HTML, **{"Content-Type": "image/png"})
        refusing = proxy.fail(operation("SendMessage"), status=500, times=None)
        status, body, _ = await api.call("POST", f"/images/{refused['image_id']}/complete")
        assert (status, body["error"]["code"]) == (422, "content_mismatch")  # it stands
        assert _webhooks_counted(await api.metrics(), "image.rejected", "kept") == 1

        # Still refused when the worker's relay finds it, after its grace: it stays.
        await refusing.wait_for_hits(refusing.hits + 1)
        assert receiver.events() == []
        proxy.clear()

        # The relay's next pass queues it.
        (event,) = await receiver.until(1)
        assert (event["type"], event["data"]["image_id"]) == ("image.rejected", refused["image_id"])
        assert _verified(receiver.requests[0]) == event
        _, out, _ = await run_command("sweep", env=api.child_environment())
        assert "0 owed jobs relayed" in out  # queued once, then taken out of the outbox


async def test_no_event_is_lost_when_sqs_and_dynamodb_both_refuse(
    make_api: MakeApi, receiver: Receiver, moto_endpoint: str
) -> None:
    async with FaultProxy(moto_endpoint) as proxy:
        backends = {"AWS_ENDPOINT_URL_SQS": proxy.url, "AWS_ENDPOINT_URL_DYNAMODB": proxy.url}
        api = await _hooked(make_api, receiver, environment=backends)
        upload, status, _ = await api.upload(images.jpeg())
        assert status == 200
        await receiver.until(1)  # image.ready
        proxy.fail(operation("SendMessage"), status=500, times=None)
        for write in ("PutItem", "TransactWriteItems"):
            proxy.fail(operation(write), status=500, times=None)
        path = f"/images/{upload['image_id']}"
        status, body, headers = await api.call("DELETE", path, params={"permanent": "true"})
        # The change and its event are one write: refused together, so nothing is owed.
        assert (status, body["error"]["code"]) == (503, "backend_unavailable")
        assert "Retry-After" in headers
        proxy.clear()
        sqs_refusing = proxy.fail(operation("SendMessage"), status=500, times=None)
        status, _, _ = await api.call("DELETE", path, params={"permanent": "true"})
        assert status == 204  # the delete stands, its event in the outbox
        assert _webhooks_counted(await api.metrics(), "image.deleted", "kept") == 1
        await sqs_refusing.wait_for_hits(sqs_refusing.hits + 1)  # the relay tried, in vain
        proxy.clear()
        ready, deleted = await receiver.until(2)
    assert (ready["type"], deleted["type"]) == ("image.ready", "image.deleted")
    assert deleted["data"]["image_id"] == upload["image_id"]


async def test_redirects_are_not_followed(make_api: MakeApi, receiver: Receiver) -> None:
    api = await _hooked(make_api, receiver, path="/redirect")
    await api.upload(images.png(), content_type="image/png")
    await receiver.until(1, path="/redirect")
    await asyncio.sleep(1)
    assert receiver.events("/elsewhere") == []  # a 307 is a failed attempt, retried later
    samples = await api.metrics()
    key = ("image_service_webhooks_total", (("event", "image.ready"), ("outcome", "retried")))
    assert samples[key] == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost:8080/hook",  # a DNS name that resolves to loopback
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped IPv6
        "http://[0:0:0:0:0:ffff:7f00:1]/hook",
        "http://2130706433/hook",  # 127.0.0.1 as one number
        "http://0x7f.1/hook",  # and in hex, short form
        "http://0177.0.0.1/hook",  # and in octal
        "http://169.254.169.254/latest/meta-data/",  # the cloud's metadata endpoint
        "http://[fe80::1]/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.1/hook",
        "http://172.16.0.1/hook",
        "http://100.64.0.1/hook",  # carrier-grade NAT
        "http://0.0.0.0/hook",
        "http://[::]/hook",
        "http://[64:ff9b::7f00:1]/hook",  # NAT64 to loopback
        "http://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 to the metadata endpoint
        "http://[::127.0.0.1]/hook",  # IPv4-compatible
        "http://224.0.0.1/hook",  # multicast
        "http://user:pass@example.com/hook",
        "ftp://example.com/hook",
        "http://no-such-host.invalid/hook",
        "/relative",
    ],
)
async def test_a_callback_url_to_a_private_place_is_refused(
    make_api: MakeApi, receiver: Receiver, url: str
) -> None:
    api = await _hooked(make_api, receiver)
    status, error, _ = await api.call(
        "POST", "/images/upload", json={"content_type": "image/png", "callback_url": url}
    )
    assert (status, error["error"]["code"]) == (422, "callback_url_not_allowed"), url
    assert error["error"]["details"]["reason"]


async def test_a_callback_url_needs_webhooks_configured(api: Api) -> None:
    status, error, _ = await api.call(
        "POST",
        "/images/upload",
        json={"content_type": "image/png", "callback_url": "https://example.com/hook"},
    )
    assert (status, error["error"]["code"]) == (422, "webhooks_not_configured")


async def test_with_private_callbacks_allowed_an_upload_gets_its_own_events(
    make_api: MakeApi, receiver: Receiver
) -> None:
    # This test's subject: IMAGE_SERVICE_WEBHOOK_ALLOW_PRIVATE lets a callback reach loopback.
    api = await _hooked(make_api, receiver, webhook_allow_private=True)
    mine, _, _ = await api.upload(images.jpeg(), callback_url=receiver.url + "/callback")
    other, _, _ = await api.upload(images.png(), content_type="image/png")
    (own,) = await receiver.until(1, path="/callback")
    assert (own["type"], own["data"]["image_id"]) == ("image.ready", mine["image_id"])
    everything = await receiver.until(2)
    assert {e["data"]["image_id"] for e in everything} == {mine["image_id"], other["image_id"]}
    callback = next(r for r in receiver.requests if r[0] == "/callback")
    assert verify(await _callback_key(api, "alice"), callback[1], callback[2]) == own


async def _callback_key(api: Api, user: str) -> str:
    status, body, headers = await api.call("GET", "/webhooks/secret", user=user)
    assert status == 200, body
    assert headers["Cache-Control"] == "no-store"
    key: str = body["secret"]
    return key


async def test_each_destination_is_signed_with_a_key_of_its_own(
    make_api: MakeApi, receiver: Receiver
) -> None:
    """A tenant holding the key that verifies its callbacks can sign nothing the operator's
    endpoint or another tenant would accept: the keys differ, and none is derivable."""
    api = await _hooked(make_api, receiver, webhook_allow_private=True)
    await api.upload(images.jpeg(), callback_url=receiver.url + "/callback")
    await api.upload(
        images.png(), "bob", content_type="image/png", callback_url=receiver.url + "/callback"
    )
    await receiver.until(2, path="/callback")
    await receiver.until(2)
    alice_key, bob_key = await _callback_key(api, "alice"), await _callback_key(api, "bob")
    assert await api.images("alice").callback_secret() == alice_key  # the client's way
    assert len({alice_key, bob_key, SECRET}) == 3
    assert alice_key == await _callback_key(api, "alice")  # stable: the same on every call
    by_owner = {
        json.loads(body)["data"]["user_id"]: (headers, body)
        for path, headers, body in receiver.requests
        if path == "/callback"
    }
    operator = [(h, b) for path, h, b in receiver.requests if path == "/hooks"]
    for owner, key in (("alice", alice_key), ("bob", bob_key)):
        headers, body = by_owner[owner]
        assert verify(key, headers, body)["data"]["user_id"] == owner
        for other in {alice_key, bob_key, SECRET} - {key}:
            with pytest.raises(WebhookVerificationError):
                verify(other, headers, body)
        # The reference library, with the key as the endpoint shows it.
        assert standardwebhooks.Webhook(key).verify(body, headers)["data"]["user_id"] == owner
    for headers, body in operator:
        assert _verified(("/hooks", headers, body))
        for tenant_key in (alice_key, bob_key):
            with pytest.raises(WebhookVerificationError):
                verify(tenant_key, headers, body)
    # An admin may read a user's key (to help them); a user may not read another's.
    assert (await api.call("GET", "/webhooks/secret", user="bob", params={"user_id": "alice"}))[
        0
    ] == 403
    status, body, _ = await api.call(
        "GET", "/webhooks/secret", user="root", admin=True, params={"user_id": "alice"}
    )
    assert (status, body["secret"]) == (200, alice_key)


async def test_the_callback_key_needs_webhooks_configured(api: Api) -> None:
    status, body, _ = await api.call("GET", "/webhooks/secret")
    assert (status, body["error"]["code"]) == (409, "webhooks_not_configured")


@pytest.mark.parametrize("secret", [SECRET, "a-plain-operator-secret-of-24-chars-or-more"])
async def test_the_standard_webhooks_library_verifies_the_operators_events(
    make_api: MakeApi, receiver: Receiver, secret: str
) -> None:
    """What the docs claim: any Standard Webhooks library verifies the service's signatures.
    A whsec_ secret goes to it as it is; a plain one as standard_secret() writes it, because
    the library base64-decodes every string it is given (the plain string itself fails)."""
    api = await make_api(webhook_url=receiver.url + "/hooks", webhook_secret=secret)
    await api.upload(images.jpeg())
    await receiver.until(1)
    _, headers, body = receiver.requests[0]
    event = standardwebhooks.Webhook(standard_secret(secret)).verify(body, headers)
    assert event["type"] == "image.ready"
    assert verify(secret, headers, body) == event  # and the client's own verifier
    if not secret.startswith("whsec_"):
        with pytest.raises(standardwebhooks.WebhookVerificationError):
            standardwebhooks.Webhook(secret).verify(body, headers)


async def test_webhook_keys_rotate_under_traffic(make_api: MakeApi, receiver: Receiver) -> None:
    """A rotation of the operator's key and of the callback master key while events flow:
    every delivery carries a signature with each key, so receivers on either verify it, and
    once the old key is unset, only the new one does."""
    new_secret = "whsec_" + base64.b64encode(b"the-new-operator-key-32-bytes-ok").decode()
    old_master = "whsec_" + base64.b64encode(b"the-old-callback-master-32-bytes").decode()
    new_master = "whsec_" + base64.b64encode(b"the-new-callback-master-32-bytes").decode()
    rotating = await make_api(
        webhook_url=receiver.url + "/hooks",
        webhook_allow_private=True,
        webhook_previous_secret=SECRET,
        webhook_secret=new_secret,
        callback_secret=new_master,
        callback_previous_secret=old_master,
    )
    callback = receiver.url + "/callback"
    await asyncio.gather(*(rotating.upload(images.jpeg(), callback_url=callback) for _ in range(4)))
    await receiver.until(4)
    await receiver.until(4, path="/callback")
    alice_new = await _callback_key(rotating, "alice")
    alice_old = callback_signing_key(old_master, "alice")
    for path, headers, body in receiver.requests:
        keys = (SECRET, new_secret) if path == "/hooks" else (alice_old, alice_new)
        assert len(headers["webhook-signature"].split()) == 2
        for key in keys:
            assert verify(key, headers, body)
            assert standardwebhooks.Webhook(standard_secret(key)).verify(body, headers)
    receiver.requests.clear()
    rotated = await make_api(
        webhook_url=receiver.url + "/hooks",
        webhook_secret=new_secret,
        callback_secret=new_master,
        webhook_allow_private=True,
    )
    await rotated.upload(images.jpeg(), callback_url=callback)
    await receiver.until(1)
    await receiver.until(1, path="/callback")
    for path, headers, body in receiver.requests:
        new, old = (new_secret, SECRET) if path == "/hooks" else (alice_new, alice_old)
        assert verify(new, headers, body)
        with pytest.raises(WebhookVerificationError):
            verify(old, headers, body)


async def test_a_migration_may_also_sign_callbacks_with_the_shared_secret(
    make_api: MakeApi, receiver: Receiver
) -> None:
    """IMAGE_SERVICE_CALLBACK_SHARED_SIGNATURE (its subject): for receivers that verified
    callbacks with the operator's secret before keys were per owner, until they switch."""
    api = await _hooked(
        make_api, receiver, webhook_allow_private=True, callback_shared_signature=True
    )
    await api.upload(images.jpeg(), callback_url=receiver.url + "/callback")
    await receiver.until(1, path="/callback")
    _, headers, body = next(r for r in receiver.requests if r[0] == "/callback")
    assert len(headers["webhook-signature"].split()) == 2
    assert verify(SECRET, headers, body)  # the receiver not yet moved
    assert verify(await _callback_key(api, "alice"), headers, body)  # and the one that has
