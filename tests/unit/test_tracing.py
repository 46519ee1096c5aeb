"""When tracing is on: only when the standard OTEL_* variables ask for it."""

from __future__ import annotations

import pytest

from image_service import tracing


@pytest.mark.parametrize(
    ("environment", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "images"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
    ],
)
def test_tracing_is_on_only_when_the_environment_asks(
    environment: dict[str, str], on: bool
) -> None:
    assert tracing.wanted(environment) is on


def test_with_tracing_off_the_helpers_cost_nothing_and_carry_nothing() -> None:
    assert not tracing.active()
    assert tracing.message_attributes() == {}
    assert tracing.log_fields() == {}
    with tracing.job_span("process", {"traceparent": {"StringValue": "00-" + "1" * 32}}):
        pass
    with tracing.span("render rendition", width=1):
        pass
