"""How the service reaches AWS. By default every DynamoDB call and every presigned URL goes
through the app's aiobotocore clients, where botocore's hooks (tracing, X-Ray, Stubber) see
them; the direct transport (an opt-in) behaves as botocore does where it matters: the same
write on a retry, the same number of attempts, an app id in the user agent."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from image_service.domain.errors import BackendUnavailable
from image_service.settings import Settings
from image_service.storage.clients import MAX_ATTEMPTS, aws_clients
from image_service.storage.dynamo import ImageRepository
from image_service.web.keys import AWS_CLIENTS, IMAGE_REPOSITORY
from tests import images
from tests.faults import FaultProxy, operation
from tests.integration.conftest import TRANSPORTS, Api, MakeApi

BOTH_TRANSPORTS = True
_DYNAMODB = "DynamoDB_20120810."


def _table_calls(proxy: FaultProxy, since: int = 0) -> Counter[str]:
    """The table operations on the wire, from the ``since``-th call on."""
    return Counter(
        call.operation for call in proxy.calls[since:] if call.target.startswith(_DYNAMODB)
    )


async def test_a_committed_transaction_whose_answer_was_lost_is_the_same_write_on_retry(
    make_api: MakeApi, moto_endpoint: str
) -> None:
    """Completion publishes the image and counts it in one transaction. Its answer is lost
    after DynamoDB committed it: the retry, carrying the same ClientRequestToken, is that
    same write. (Without the token it failed its own condition: the completion took its own
    write for another's, and no processing job was sent.)"""
    async with FaultProxy(moto_endpoint) as proxy:
        api = await make_api(environment={"AWS_ENDPOINT_URL_DYNAMODB": proxy.url})
        upload = await api.upload_url()
        assert await api.send_to_s3(upload, images.jpeg()) == 200
        before = _table_calls(proxy)["TransactWriteItems"]
        lost = proxy.lose_answer(operation("TransactWriteItems"), times=1)
        status, body, _ = await api.call("POST", f"/images/{upload['image_id']}/complete")
        assert lost.hits == 1
        assert (status, body["status"]) == (200, "processing"), body
        assert _table_calls(proxy)["TransactWriteItems"] - before == 2  # the write, its retry
        assert (await api.processed(upload["image_id"]))["status"] == "ready"
        usage = await api.client.app[IMAGE_REPOSITORY].usage("alice")
        assert usage.images == 1  # counted once


async def test_the_attempts_are_botocores_for_the_same_configuration(
    moto_endpoint: str, aws_transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """max_attempts in botocore's retries config counts retries after the first try."""
    async with FaultProxy(moto_endpoint) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", proxy.url)
        proxy.fail(operation("GetItem"), status=500, times=None)
        settings = Settings(jwt_secret="k" * 32, table="any", aws_transport=aws_transport)
        async with aws_clients(settings) as clients:
            with pytest.raises(BackendUnavailable):
                await ImageRepository(clients.table, "any").get("alice", "image")
        assert _table_calls(proxy)["GetItem"] == MAX_ATTEMPTS + 1


async def test_every_call_carries_the_services_app_id(
    make_api: MakeApi, moto_endpoint: str
) -> None:
    async with FaultProxy(moto_endpoint) as proxy:
        api = await make_api(environment={"AWS_ENDPOINT_URL": proxy.url})
        _, _, image = await api.upload(images.jpeg())
        _, rendition, _ = await api.call(
            "GET", f"/images/{image['image_id']}/render", params={"w": "256"}
        )
        async with api.http.get(rendition["url"]) as response:
            assert response.status == 200
    # Every call but the test's own upload to its presigned URL.
    agents = {
        call.user_agent
        for call in proxy.calls
        if not (call.method == "PUT" and "/incoming/" in call.path)
    }
    assert agents
    assert all("app/image-service" in agent for agent in agents), agents


# -- the default: nothing bypasses aiobotocore -----------------------------------------------------


def _hooked(api: Api) -> tuple[list[str], list[str]]:
    """Registers on the app's own clients: the table operations botocore is about to call,
    and the presigns (URLs and POST policies) its signer makes."""
    clients = api.client.app[AWS_CLIENTS]
    table_calls: list[str] = []
    presigns: list[str] = []

    def before_call(model: Any, **_: Any) -> None:
        table_calls.append(model.name)

    def before_sign(operation_name: str, signature_version: str = "", **_: Any) -> None:
        if "query" in signature_version or "presign" in signature_version:
            presigns.append(operation_name)

    clients.dynamodb.meta.events.register("before-call.dynamodb", before_call)
    for s3 in {id(clients.s3): clients.s3, id(clients.s3_presign): clients.s3_presign}.values():
        s3.meta.events.register("before-sign.s3", before_sign)
    return table_calls, presigns


@pytest.mark.parametrize("aws_transport", TRANSPORTS[:1])
async def test_botocores_hooks_see_every_table_call_and_presign_of_a_lifecycle(
    make_api: MakeApi, moto_endpoint: str, aws_transport: str
) -> None:
    assert aws_transport == "aiobotocore"
    async with FaultProxy(moto_endpoint) as proxy:
        api = await make_api(environment={"AWS_ENDPOINT_URL_DYNAMODB": proxy.url})
        # The embedded worker's first heartbeat, its first call, is on its way already: from
        # once it has arrived on.
        async with asyncio.timeout(10):
            while not _table_calls(proxy)["PutItem"]:  # noqa: ASYNC110 (another task's call)
                await asyncio.sleep(0.05)
        table_calls, presigns = _hooked(api)
        hooked_at = len(proxy.calls)
        handed_out = 0
        upload, status, image = await api.upload(images.jpeg(640, 480), tags=["hooked"])
        handed_out += 1
        assert (status, image["status"]) == (200, "ready")
        post = await api.upload_url(method="POST", content_type="image/png")
        handed_out += 1
        assert await api.send_to_s3(post, images.png()) == 204
        assert (await api.call("POST", f"/images/{post['image_id']}/complete"))[0] == 200
        parts = await api.upload_url(
            method="MULTIPART", size=6 * 1024 * 1024, part_size=5 * 1024 * 1024
        )
        handed_out += len(parts["parts"])
        for params in ({}, {"variant": image["variants"][0]["name"]}):
            status, _, _ = await api.call(
                "GET", f"/images/{upload['image_id']}/download", params=params
            )
            assert status == 200
            handed_out += 1
        status, rendition, _ = await api.call(
            "GET", f"/images/{upload['image_id']}/render", params={"w": "256"}
        )
        async with api.http.get(rendition["url"]) as response:
            assert response.status == 200
        await api.call("GET", "/images", params={"tag": "hooked"})
        await api.call("PATCH", f"/images/{upload['image_id']}", json={"tags": ["kept"]})
        await api.call("DELETE", f"/images/{upload['image_id']}")
        await api.call("DELETE", f"/images/{upload['image_id']}", params={"permanent": "true"})
        await api.client.close()  # the worker and the watcher stop: every call is in

    on_the_wire = _table_calls(proxy, since=hooked_at)
    assert sum(on_the_wire.values()) > 20
    assert Counter(table_calls) == on_the_wire
    assert len(presigns) == handed_out, presigns


@pytest.mark.parametrize("aws_transport", TRANSPORTS)
async def test_rendition_reads_go_through_the_proxy_botocore_would_use(
    make_api: MakeApi, moto_endpoint: str, aws_transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY names a forward proxy (a FaultProxy in front of moto takes absolute-form
    requests as one). The direct transport's reads by URL go through it, as botocore's do."""
    api = await make_api()
    _, _, image = await api.upload(images.jpeg())
    async with FaultProxy(moto_endpoint) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        replica = await make_api(replica_of=api, embedded_worker=False)
        _, rendition, _ = await replica.call(
            "GET", f"/images/{image['image_id']}/render", params={"w": "256"}
        )
        async with replica.http.get(rendition["url"]) as response:
            assert response.status == 200
    original = f"/images/alice/{image['image_id']}/original"
    assert any(call.method == "GET" and call.path.endswith(original) for call in proxy.calls)
