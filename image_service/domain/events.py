"""Image events for webhooks: what happened to an image, queued for delivery.

Each event becomes one job per destination on the processing queue (SQS): the deployment's
``IMAGE_SERVICE_WEBHOOK_URL``, and the upload's own ``callback_url`` if it gave one. The worker
delivers it (``worker/webhooks.py``), signed, retrying with backoff for up to a day, so a
delivery is **at least once** from the moment the event is queued; each destination's
failures are its own. Receivers de-duplicate by ``webhook-id``.

Each destination kind has a key of its own: the operator's endpoint is signed with
``IMAGE_SERVICE_WEBHOOK_SECRET``, and each owner's callbacks with a key derived for that owner
from the callback master key (``domain/callbacks.py``; the owner reads theirs at
``GET /webhooks/secret``). A tenant who verifies its callbacks can therefore sign nothing the
operator or another tenant would accept.

An event is queued after the change it reports is stored, never before: a receiver never
hears of a state the service does not have. If the queue refuses it even after SQS's retries,
the job is kept in the table instead (``outcome="kept"``) and the sweeper queues it as soon as
SQS takes it again, keeping its ``webhook-id``; only if DynamoDB refuses it too is the event
logged and counted as ``lost``. The change stands either way.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from image_service.domain.callbacks import callback_signing_key
from image_service.domain.errors import BackendUnavailable
from image_service.domain.models import ImageRecord, format_timestamp
from image_service.domain.ports import Clock, Jobs, Outbox
from image_service.domain.views import image_view

log = logging.getLogger(__name__)

READY = "image.ready"
REJECTED = "image.rejected"
QUARANTINED = "image.quarantined"
DELETED = "image.deleted"
# Heard in this process (event streams), not sent as webhooks.
TRASHED = "image.trashed"
RESTORED = "image.restored"
EVENT_TYPES = (READY, REJECTED, QUARANTINED, DELETED)

Observe = Callable[[str, str], None]
"""Told (event type, outcome): ``queued``, ``kept`` or ``lost``."""


class ImageEvents:
    def __init__(
        self,
        jobs: Jobs,
        *,
        outbox: Outbox,
        webhook_url: str | None,
        signing: bool,
        allow_private: bool,
        callback_masters: tuple[str, ...] = (),
        clock: Clock,
        observe: Observe = lambda _type, _outcome: None,
    ) -> None:
        self._jobs = jobs
        self._outbox = outbox  # where a job the queue refused waits for the sweeper
        self._webhook_url = webhook_url
        # Without a secret nothing can be signed, so nothing is sent (and callback_url is refused).
        self.signing = signing
        self._callback_masters = callback_masters
        self._allow_private = allow_private
        self._clock = clock
        self._observe = observe
        self._listeners: list[Callable[[str, ImageRecord], None]] = []

    def callback_secret(self, owner: str) -> str | None:
        """The key that signs ``owner``'s callbacks (None: no webhooks are sent)."""
        if not self.signing or not self._callback_masters:
            return None
        return callback_signing_key(self._callback_masters[0], owner)

    def listen(self, listener: Callable[[str, ImageRecord], None]) -> None:
        """``listener`` hears of every event this process publishes, at once (in-process)."""
        self._listeners.append(listener)

    def notify(self, event_type: str, record: ImageRecord) -> None:
        """Tells this process's listeners only (image.trashed, image.restored: no webhook)."""
        for listener in self._listeners:
            listener(event_type, record)

    async def publish(self, event_type: str, record: ImageRecord) -> None:
        self.notify(event_type, record)
        destinations: list[tuple[str, bool, str]] = []
        if self._webhook_url:  # the operator's own endpoint: wherever they put it
            destinations.append((self._webhook_url, True, OPERATOR_KEY))
        if record.callback_url:  # the caller's: public addresses only, unless allowed
            destinations.append((record.callback_url, self._allow_private, OWNER_KEY))
        if not destinations or not self.signing:
            return
        now = self._clock()
        data = image_view(record, gps=False)  # a position goes to its owner only
        if record.rejection_reason:  # why it was rejected or quarantined
            data["reason"] = record.rejection_reason
        body = {"type": event_type, "timestamp": format_timestamp(now), "data": data}
        message_id = f"msg_{uuid.uuid4().hex}"
        for url, private_ok, key in destinations:
            job = webhook_job(
                message_id, url, body, private_ok=private_ok, key=key, owner=record.user_id
            )
            self._observe(event_type, await self._queue(job, record))

    async def _queue(self, job: dict[str, Any], record: ImageRecord) -> str:
        """Queues a delivery job, or keeps it for the sweeper; the outcome, as counted."""
        try:
            await self._jobs.send(job)
            return "queued"
        except BackendUnavailable as outage:
            refused = outage.reason
        where = (
            f"webhook {job['id']} ({job['body']['type']}) for {record.user_id}/{record.image_id}"
        )
        try:
            await self._outbox.keep_job(record.user_id, job, now=self._clock())
        except BackendUnavailable as outage:
            log.error(
                "%s lost: the queue refused it (%s), and so did the table (%s)",
                where,
                refused,
                outage.reason,
            )
            return "lost"
        log.warning("%s kept for the sweeper: the queue refused it (%s)", where, refused)
        return "kept"


# Which key signs a delivery: the operator's, or the image owner's callback key.
OPERATOR_KEY = "operator"
OWNER_KEY = "owner"


def webhook_job(
    message_id: str,
    url: str,
    body: dict[str, Any],
    *,
    private_ok: bool,
    key: str,
    owner: str,
) -> dict[str, Any]:
    """A delivery job: where, what, signed with which key, and its retry state (first try
    now, attempt 0)."""
    return {
        "type": "webhook",
        "id": message_id,
        "url": url,
        "private_ok": private_ok,
        "key": key,
        "owner": owner,
        "body": body,
        "first_attempt": time.time(),
        "attempt": 0,
        "not_before": 0,
    }
