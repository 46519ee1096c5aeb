"""OpenTelemetry tracing: off unless the standard ``OTEL_*`` variables turn it on.

On when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set, or
``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``: OTLP over HTTP/protobuf; ``console``);
``OTEL_SDK_DISABLED=true`` keeps it off. The service name, the sampler and the exporter's
settings are the SDK's own variables (``OTEL_SERVICE_NAME``, ``OTEL_TRACES_SAMPLER``...).

The maintained instrumentations make the spans wherever they exist: every HTTP request the API
serves (aiohttp-server), every S3, DynamoDB and SQS call (aiobotocore), every outgoing HTTP
request (aiohttp-client: webhook deliveries, the direct transport, JWKS). The service adds
what none of them can know: a span per worker job, continuing the trace of the request that
queued it (the W3C ``traceparent`` travels in the SQS message's attributes), and a span per
rendition render. Every JSON log line written inside a span carries its ``trace_id`` and
``span_id``.

With tracing off, nothing here costs more than a flag check: no SDK is loaded, and the helpers
below hand back no-op context managers.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

log = logging.getLogger(__name__)

TRACER_NAME = "image_service"
# SQS message attributes carrying the trace context (W3C Trace Context's header names).
CONTEXT_ATTRIBUTES = ("traceparent", "tracestate")

_active = False


def wanted(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for traces."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def active() -> bool:
    return _active


def start(service_name: str) -> bool:
    """Sets up the SDK and the instrumentations once per process, if the environment asks;
    whether tracing is on. Call it before the app and the AWS clients are made."""
    global _active
    if _active or not wanted():
        return _active
    from opentelemetry import trace
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor
    from opentelemetry.instrumentation.botocore import AiobotocoreInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # OTEL_SERVICE_NAME (and OTEL_RESOURCE_ATTRIBUTES) win over the process's own name.
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = TracerProvider(resource=Resource.create(attributes))  # OTEL_TRACES_SAMPLER...
    exporters = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").lower().split(",")
    for name in (exporter.strip() for exporter in exporters):
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        else:
            log.warning("OTEL_TRACES_EXPORTER %r is not supported here (otlp, console)", name)
    trace.set_tracer_provider(provider)
    # A share link's path is its token (and its renditions' are signatures): bearer
    # capabilities, which no span may carry to a tracing backend. Those requests go untraced.
    excluded = os.environ.get("OTEL_PYTHON_AIOHTTP_SERVER_EXCLUDED_URLS", "")
    os.environ["OTEL_PYTHON_AIOHTTP_SERVER_EXCLUDED_URLS"] = ",".join(
        part for part in (excluded, r"/s/") if part
    )
    AioHttpServerInstrumentor().instrument(tracer_provider=provider)
    AioHttpClientInstrumentor().instrument(tracer_provider=provider)
    AiobotocoreInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]  # its __init__ is untyped
    _active = True
    log.info("tracing on: spans exported as OTEL_* configures them")
    return True


def stop() -> None:
    """Exports what is buffered (at the end of a process)."""
    if not _active:
        return
    from opentelemetry import trace

    shutdown = getattr(trace.get_tracer_provider(), "shutdown", None)
    if shutdown is not None:
        shutdown()


def log_fields() -> dict[str, str]:
    """``trace_id`` and ``span_id`` of the span this code runs in, for a log line."""
    if not _active:
        return {}
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}


def message_attributes() -> dict[str, dict[str, str]]:
    """SQS message attributes carrying the current trace context (none with tracing off)."""
    if not _active:
        return {}
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return {
        name: {"DataType": "String", "StringValue": carrier[name]}
        for name in CONTEXT_ATTRIBUTES
        if name in carrier
    }


@contextlib.contextmanager
def job_span(job_type: str, attributes: Mapping[str, Any]) -> Iterator[None]:
    """A span for one worker job, continuing the trace whose context the message carried."""
    if not _active:
        yield
        return
    from opentelemetry import propagate, trace

    carrier = {
        name: str(value.get("StringValue", ""))
        for name, value in attributes.items()
        if isinstance(value, Mapping)
    }
    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(
        f"job {job_type}",
        context=propagate.extract(carrier),
        kind=trace.SpanKind.CONSUMER,
        attributes={"messaging.system": "aws_sqs", "image_service.job.type": job_type},
    ):
        yield


@contextlib.contextmanager
def span(name: str, **attributes: str | int) -> Iterator[None]:
    """A span of the service's own (a render), under the current one."""
    if not _active:
        yield
        return
    from opentelemetry import trace

    with trace.get_tracer(TRACER_NAME).start_as_current_span(name, attributes=attributes):
        yield
