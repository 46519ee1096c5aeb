"""Delivering webhook jobs (``domain/events.py``): signed per Standard Webhooks, at least once.

One attempt per job: a POST of the event with ``webhook-id``, ``webhook-timestamp`` (this
attempt's) and ``webhook-signature``, within 10 s, redirects not followed; any 2xx is delivered.
A failed attempt queues the job again, hidden for the next step of the backoff (5 s, 30 s,
2 min, 10 min, 30 min, then hourly); SQS hides a message for 15 minutes at most, so a longer
wait is served in 15-minute hops. Once the event is older than
``IMAGE_SERVICE_WEBHOOK_MAX_AGE_SECONDS`` (a day), a failed job goes to the dead-letter queue
instead, and is counted: ``image_service_webhooks_total{outcome="dead_lettered"}``.

A destination that may not reach private addresses (a caller's ``callback_url``) is checked on
every attempt: the URL's host is resolved and each address checked (``domain/callbacks.py``),
and the connection itself goes through a resolver that refuses private answers, so a name
that resolves elsewhere between the two is still refused.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from image_service.client.webhooks import sign
from image_service.domain.callbacks import (
    callback_signing_key,
    public_address,
    url_refusal,
)
from image_service.domain.events import OPERATOR_KEY
from image_service.storage.queue import JobQueue

log = logging.getLogger(__name__)

ATTEMPT_TIMEOUT_SECONDS = 10
RETRY_SCHEDULE_SECONDS = (5, 30, 120, 600, 1800, 3600)
MAX_SQS_DELAY_SECONDS = 900
USER_AGENT = "image-service-webhooks/1"

Observe = Callable[[str, str], None]
"""Told (event type, outcome): delivered, retried, dead_lettered."""


class NonPublicAddress(OSError):
    """A name that resolved to an address the service may not connect to."""


class PublicOnlyResolver(AbstractResolver):
    """aiohttp's resolver, refusing any name that resolves to a non-public address: the
    connection is then made to an address that was checked, whatever the name resolves to
    next (DNS rebinding). ``is_public`` judges each address."""

    def __init__(self, is_public: Callable[[str], bool] = public_address) -> None:
        self._resolver = DefaultResolver()
        self._is_public = is_public

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        if not results or not all(self._is_public(result["host"]) for result in results):
            raise NonPublicAddress(f"{host} resolves to a non-public address")
        return results

    async def close(self) -> None:
        await self._resolver.close()


def retry_delay(attempt: int) -> int:
    """Seconds before attempt ``attempt + 1`` (``attempt`` failed ones so far)."""
    return RETRY_SCHEDULE_SECONDS[min(attempt, len(RETRY_SCHEDULE_SECONDS)) - 1]


class WebhookSender:
    def __init__(
        self,
        *,
        jobs: JobQueue,
        dead_letters: JobQueue,
        operator_secrets: tuple[str, ...],
        callback_masters: tuple[str, ...],
        operator_url: str | None,
        max_age_seconds: int,
        callbacks_shared_signature: bool = False,
        http: aiohttp.ClientSession,
        public_http: aiohttp.ClientSession,
        observe: Observe = lambda _type, _outcome: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._jobs = jobs
        self._dead_letters = dead_letters
        # The key that signs, then any being rotated out: a delivery carries a signature with
        # each (Standard Webhooks' rotation), so receivers switch keys at their own pace.
        self._operator_secrets = operator_secrets
        self._callback_masters = callback_masters
        self._operator_url = operator_url
        self._shared_signature = callbacks_shared_signature
        self._max_age = max_age_seconds
        self._http = http  # for destinations that may be anywhere (the operator's)
        self._public_http = public_http  # through PublicOnlyResolver (callers' callback_url)
        self._observe = observe
        self._clock = clock

    async def deliver(self, job: dict[str, Any]) -> None:
        """One attempt, or one more hop of a wait; a failure is queued again or dead-lettered
        (never raised: the job itself is done either way)."""
        now = self._clock()
        event_type = str(job["body"].get("type"))
        if job["not_before"] > now:
            await self._requeue(job, job["not_before"] - now)
            return
        failure = await self._attempt(job, int(now))
        if failure is None:
            self._observe(event_type, "delivered")
            return
        attempt = int(job["attempt"]) + 1
        if now - job["first_attempt"] >= self._max_age:
            await self._dead_letters.send({**job, "attempt": attempt, "last_failure": failure})
            self._observe(event_type, "dead_lettered")
            log.error(
                "webhook %s to %s dead-lettered after %d attempts: %s",
                job["id"],
                job["url"],
                attempt,
                failure,
            )
            return
        delay = retry_delay(attempt)
        log.warning(
            "webhook %s to %s failed (attempt %d, next in %d s): %s",
            job["id"],
            job["url"],
            attempt,
            delay,
            failure,
        )
        await self._requeue({**job, "attempt": attempt, "not_before": now + delay}, delay)
        self._observe(event_type, "retried")

    async def _requeue(self, job: dict[str, Any], wait: float) -> None:
        await self._jobs.send(job, delay_seconds=min(MAX_SQS_DELAY_SECONDS, math.ceil(wait)))

    def _secrets_for(self, job: dict[str, Any]) -> list[str]:
        """The keys of the job's destination: the operator's, or its owner's callback keys.
        (A job queued before keys were per destination names none: the operator's URL is
        the operator's, anything else a callback of the image's owner.)"""
        kind = job.get("key") or (OPERATOR_KEY if job["url"] == self._operator_url else "owner")
        if kind == OPERATOR_KEY:
            return list(self._operator_secrets)
        owner = str(job.get("owner") or job["body"]["data"]["user_id"])
        keys = [callback_signing_key(master, owner) for master in self._callback_masters]
        if self._shared_signature:  # a migration's receivers, still on the shared secret
            keys += self._operator_secrets
        return keys

    async def _attempt(self, job: dict[str, Any], timestamp: int) -> str | None:
        """None when delivered; else what went wrong."""
        url = str(job["url"])
        private_ok = bool(job["private_ok"])
        if not private_ok:
            refusal = await url_refusal(url, allow_private=False)
            if refusal is not None:
                return f"refused: {refusal}"
        body = json.dumps(job["body"], separators=(",", ":")).encode()
        signatures = " ".join(
            sign(secret, str(job["id"]), timestamp, body) for secret in self._secrets_for(job)
        )
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "webhook-id": str(job["id"]),
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signatures,
        }
        session = self._http if private_ok else self._public_http
        try:
            async with session.post(
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=ATTEMPT_TIMEOUT_SECONDS),
            ) as response:
                if 200 <= response.status < 300:
                    return None
                return f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"
