"""OpenTelemetry tracing end to end: `serve` and `worker` as processes, exporting over OTLP/HTTP
to a receiver on loopback. One upload's trace runs from `POST /images/{id}/complete` through the
SQS send and the worker's job to its last DynamoDB write, and the job's log lines carry it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from image_service.programs.embedded import free_port
from tests import images
from tests.integration.conftest import Api, auth
from tests.processes import Program, wait_for_port

EXPORT_SECONDS = 30
_TABLE_WRITES = {"DynamoDB.PutItem", "DynamoDB.UpdateItem", "DynamoDB.TransactWriteItems"}


@dataclass(frozen=True)
class Span:
    service: str
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    attributes: dict[str, str]


@dataclass
class Collector:
    """An OTLP/HTTP trace receiver: what the processes exported, span by span."""

    url: str
    spans: list[Span] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def receive(self, body: bytes) -> None:
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        for resource_spans in export.resource_spans:
            service = next(
                (
                    a.value.string_value
                    for a in resource_spans.resource.attributes
                    if a.key == "service.name"
                ),
                "",
            )
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    self.spans.append(
                        Span(
                            service=service,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            name=span.name,
                            attributes={
                                a.key: a.value.string_value or str(a.value.int_value)
                                for a in span.attributes
                            },
                        )
                    )
        self.arrived.set()

    async def until(self, found: object, *, within: float = EXPORT_SECONDS) -> list[Span]:
        """The spans once ``found(spans)`` holds."""
        try:
            async with asyncio.timeout(within):
                while True:
                    self.arrived.clear()  # before looking: an export meanwhile sets it again
                    if found(self.spans):  # type: ignore[operator]
                        return self.spans
                    await self.arrived.wait()
        except TimeoutError:
            names = sorted({(s.service, s.name) for s in self.spans})
            raise AssertionError(f"not exported within {within} s; spans seen: {names}") from None


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    port = free_port()
    state = Collector(url=f"http://127.0.0.1:{port}")

    async def traces(request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        state.receive(await request.read())
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield state
    await runner.cleanup()


def _traced(collector: Collector, service: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_SERVICE_NAME": service,
        # Exported every half second, rather than the SDK's 5 s, so the test waits less.
        "OTEL_BSP_SCHEDULE_DELAY": "500",
    }


def _job_of(spans: list[Span], trace_id: str) -> Span | None:
    return next((s for s in spans if s.trace_id == trace_id and s.name == "job process"), None)


async def test_one_trace_runs_from_complete_through_sqs_and_the_worker_to_dynamodb(
    make_api: object, collector: Collector
) -> None:
    api: Api = await make_api(embedded_worker=False)  # type: ignore[operator]
    port = free_port()
    serve = await Program.start(
        "serve",
        env=api.child_environment(PORT=str(port)) | _traced(collector, "images-api"),
    )
    worker = await Program.start(
        "worker", env=api.child_environment() | _traced(collector, "images-worker")
    )
    try:
        await wait_for_port(port, owner=serve.process)
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(headers=auth("alice")) as http:
            async with http.post(f"{base}/images/upload", json={"content_type": "image/jpeg"}) as r:
                upload = await r.json()
            await api.send_to_s3(upload, images.jpeg())
            image_id = upload["image_id"]
            async with http.post(f"{base}/images/{image_id}/complete") as completed:
                assert completed.status == 200
            async with http.get(
                f"{base}/images/{image_id}", params={"wait": "ready", "timeout": "20"}
            ) as waited:
                assert (await waited.json())["status"] == "ready"

        def complete_span(spans: list[Span]) -> Span | None:
            return next(
                (
                    s
                    for s in spans
                    if s.service == "images-api"
                    and s.name.startswith("POST /images/")
                    and s.name.endswith("/complete")
                ),
                None,
            )

        spans = await collector.until(
            lambda spans: (
                (c := complete_span(spans)) is not None
                and (j := _job_of(spans, c.trace_id)) is not None
                and any(s.parent_id == j.span_id and s.name in _TABLE_WRITES for s in spans)
            )
        )
        complete = complete_span(spans)
        assert complete is not None
        trace = [s for s in spans if s.trace_id == complete.trace_id]
        by_id = {s.span_id: s for s in trace}

        send = next(s for s in trace if s.name == "SQS.SendMessage")
        assert send.service == "images-api"
        assert _ancestor(by_id, send, complete)  # queued while completing

        job = _job_of(spans, complete.trace_id)
        assert job is not None
        assert job.service == "images-worker"
        assert _ancestor(by_id, job, complete)  # the job continues the request's trace

        writes = [s for s in trace if s.name.startswith("DynamoDB.") and _ancestor(by_id, s, job)]
        assert any(s.name in _TABLE_WRITES for s in writes)  # the image made ready
        assert all(s.service == "images-worker" for s in writes)
        assert any(s.name.startswith("S3.") and _ancestor(by_id, s, job) for s in trace)
    finally:
        await serve.stop()
        await worker.stop()

    logged = [json.loads(line) for line in worker.lines if line.startswith("{")]
    in_trace = [entry for entry in logged if entry.get("trace_id") == complete.trace_id]
    assert in_trace, worker.output
    assert all(len(entry["span_id"]) == 16 for entry in in_trace)
    access = [json.loads(line) for line in serve.lines if line.startswith("{")]
    assert any(
        entry.get("trace_id") == complete.trace_id and entry.get("logger") == "image_service.access"
        for entry in access
    )


def _ancestor(by_id: dict[str, Span], span: Span, ancestor: Span) -> bool:
    """Whether ``ancestor`` is ``span``'s parent, or its parent's, and so on."""
    seen = 0
    while span.parent_id and seen < 100:
        if span.parent_id == ancestor.span_id:
            return True
        parent = by_id.get(span.parent_id)
        if parent is None:
            return False
        span, seen = parent, seen + 1
    return False
