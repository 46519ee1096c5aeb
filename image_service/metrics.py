"""Prometheus metrics: HTTP traffic per route, what DynamoDB reads cost, and which backend
an outage's 503s blame.

Each app has a registry of its own (no process-global state), served at ``/metrics``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Covers the API's range: sub-millisecond presigning up to multi-second backend trouble.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Jobs run from milliseconds (an upload event for a gone image) to tens of seconds (a large
# animation's variants, a slow scanner).
_JOB_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# A rendition takes milliseconds (a small JPEG) to seconds (a 50 MP original to AVIF).
_RENDER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Operations whose responses report how many items DynamoDB read.
_READS = {"GetItem", "BatchGetItem", "Query", "Scan"}


def webhook_counter(registry: CollectorRegistry) -> Counter:
    return Counter(
        "image_service_webhooks",
        "Webhook events, by type and outcome: queued or lost (where the event happened), "
        "delivered, retried or dead_lettered (in the worker that delivers them).",
        ["event", "outcome"],
        registry=registry,
    )


def cdn_purge_counter(registry: CollectorRegistry) -> Counter:
    counter = Counter(
        "image_service_cdn_purges",
        "CDN invalidations of an image's rendition paths, by outcome: purged, deferred "
        "(CloudFront busy: the job is back a minute later), failed (the queue delivers the job "
        "again) or dropped (no CDN configured any more).",
        ["outcome"],
        registry=registry,
    )
    for outcome in ("purged", "deferred", "failed", "dropped"):
        counter.labels(outcome)
    return counter


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.webhooks = webhook_counter(self.registry)
        # Purges the embedded worker sent (image-service dev, make run).
        self.cdn_purges = cdn_purge_counter(self.registry)
        self.share_views, self.share_refusals = share_counters(self.registry)
        self.requests = Counter(
            "image_service_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "image_service_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template, method and status.",
            ["route", "method", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.dynamodb_requests = Counter(
            "image_service_dynamodb_requests",
            "DynamoDB API calls, by operation.",
            ["operation"],
            registry=self.registry,
        )
        self.dynamodb_items_read = Counter(
            "image_service_dynamodb_items_read",
            "Items DynamoDB read: ScannedCount of queries and scans, items returned otherwise.",
            registry=self.registry,
        )
        # What to alert on in an outage: which backend the 503s blame, and whether it refused
        # (backend_unavailable) or let the deadline pass (backend_timeout).
        self.backend_failures = Counter(
            "image_service_backend_failures",
            "Requests answered 503 for a backend, by backend and code.",
            ["backend", "code"],
            registry=self.registry,
        )

        self.renders = Counter(
            "image_service_renders",
            "Rendition deliveries, by outcome: rendered (made now), cached (stored or known "
            "already), refused (the render bound or the user's rate of new renditions).",
            ["outcome"],
            registry=self.registry,
        )
        self.render_duration = Histogram(
            "image_service_render_duration_seconds",
            "CPU-bound time to make one rendition (decode, resize, encode).",
            buckets=_RENDER_BUCKETS,
            registry=self.registry,
        )

    def observe_webhook(self, event_type: str, outcome: str) -> None:
        self.webhooks.labels(event_type, outcome).inc()

    def observe_purge(self, outcome: str) -> None:
        self.cdn_purges.labels(outcome).inc()

    def observe_render(self, outcome: str, seconds: float | None) -> None:
        self.renders.labels(outcome).inc()
        if seconds is not None:
            self.render_duration.observe(seconds)

    def observe_backend_failure(self, backend: str, code: str) -> None:
        self.backend_failures.labels(backend, code).inc()

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method, str(status)).observe(seconds)

    def observe_dynamodb_call(self, operation: str, parsed: Mapping[str, Any]) -> None:
        """Every DynamoDB call, once however many attempts it took (storage/dynamo/wire.py)."""
        self.dynamodb_requests.labels(operation).inc()
        if operation not in _READS:
            return
        if "ScannedCount" in parsed:
            read = int(parsed["ScannedCount"])
        elif "Item" in parsed:
            read = 1
        elif "Responses" in parsed:
            read = sum(len(items) for items in parsed["Responses"].values())
        else:
            read = 0
        self.dynamodb_items_read.inc(read)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def share_counters(registry: CollectorRegistry) -> tuple[Counter, Counter]:
    views = Counter(
        "image_service_share_views",
        "Share links opened and shown (GET /s/<token>).",
        registry=registry,
    )
    refusals = Counter(
        "image_service_share_refusals",
        "Share link requests refused, by reason: share_not_found, share_expired, "
        "share_revoked, view_limit_reached, password_required, wrong_password, rate_limited.",
        ["reason"],
        registry=registry,
    )
    return views, refusals


class WorkerMetrics:
    """A worker process's own figures, on its own port (``IMAGE_SERVICE_WORKER_METRICS_PORT``):
    the jobs it ran and how they ended, and what its sweeper drove on."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.webhooks = webhook_counter(self.registry)
        self.jobs = Counter(
            "image_service_worker_jobs",
            "Jobs run, by outcome: done, failed (retried later, then dead-lettered) or "
            "cut_short (by shutdown; back on the queue at once).",
            ["outcome"],
            registry=self.registry,
        )
        self.job_duration = Histogram(
            "image_service_worker_job_duration_seconds",
            "Time a job ran, by outcome.",
            ["outcome"],
            buckets=_JOB_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "image_service_worker_jobs_in_flight",
            "Jobs running now.",
            registry=self.registry,
        )
        self.receive_failures = Counter(
            "image_service_worker_receive_failures",
            "Polls of the queue that failed (an SQS outage: the worker keeps polling).",
            registry=self.registry,
        )
        self.swept = Counter(
            "image_service_sweeper_actions",
            "What the sweeper drove on, by action: requeued (processing), delete_finished or "
            "purged (from the trash).",
            ["action"],
            registry=self.registry,
        )
        self.deferred = Counter(
            "image_service_worker_jobs_deferred",
            "Reprocess jobs put back on the queue: they ask for settings a live worker runs "
            "and this one does not.",
            registry=self.registry,
        )
        self.relayed = Counter(
            "image_service_outbox_relayed",
            "Owed jobs the outbox relay queued: nobody had sent them within the grace (the "
            "process that made the change died, or the queue refused them).",
            registry=self.registry,
        )
        self.cdn_purges = cdn_purge_counter(self.registry)
        for outcome in ("done", "failed", "cut_short"):
            self.jobs.labels(outcome)
        for action in ("requeued", "delete_finished", "purged"):
            self.swept.labels(action)

    def observe_webhook(self, event_type: str, outcome: str) -> None:
        self.webhooks.labels(event_type, outcome).inc()

    def observe_purge(self, outcome: str) -> None:
        self.cdn_purges.labels(outcome).inc()

    def observe_job(self, outcome: str, seconds: float) -> None:
        self.jobs.labels(outcome).inc()
        self.job_duration.labels(outcome).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
