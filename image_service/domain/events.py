"""Image events: what happened to an image, for webhooks and for every replica's streams.

A change that owes an event says so when it is stored (``owe``, then the records' write with
``owed=``): the same DynamoDB transaction that changes the image writes the event's *feed
entry* (which every replica's ``GET /events`` streams read) and one *outbox item* per webhook
destination (the deployment's ``IMAGE_SERVICE_WEBHOOK_URL``, and the upload's own
``callback_url`` if it gave one). Nothing is owed for a change that is not stored, and nothing
stored is ever without its event: a receiver never hears of a state the service does not have,
and hears of every one it had.

Once the change is stored, ``delivered`` sends its jobs to the processing queue (SQS) at once
and takes them out of the outbox. If the process dies between the commit and the send, or SQS
refuses, the jobs stay in the outbox and the relay on every worker (``worker/relay.py``) sends
them after a grace, keeping their ``webhook-id``. The worker delivers each (``worker/webhooks.py``),
signed, retrying with backoff for up to a day, so delivery is **at least once** from the commit;
receivers de-duplicate by ``webhook-id``, which every send of one event shares.

Each destination kind has a key of its own: the operator's endpoint is signed with
``IMAGE_SERVICE_WEBHOOK_SECRET``, and each owner's callbacks with a key derived for that owner
from the callback master key (``domain/callbacks.py``; the owner reads theirs at
``GET /webhooks/secret``). A tenant who verifies its callbacks can therefore sign nothing the
operator or another tenant would accept.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from image_service.domain.callbacks import callback_signing_key
from image_service.domain.cdn import PURGE_EVENT, purge_job, rendition_paths
from image_service.domain.errors import BackendUnavailable
from image_service.domain.models import ImageRecord, format_timestamp
from image_service.domain.ports import Clock, Jobs, Outbox, Owed, OwedJob
from image_service.domain.views import image_view

log = logging.getLogger(__name__)

READY = "image.ready"
REJECTED = "image.rejected"
QUARANTINED = "image.quarantined"
DELETED = "image.deleted"
# Heard by event streams only, not sent as webhooks.
PROCESSING = "image.processing"
TRASHED = "image.trashed"
RESTORED = "image.restored"
# A ready image whose renditions changed (reprocessed, a new focal point): streams hear it.
UPDATED = "image.updated"
EVENT_TYPES = (READY, REJECTED, QUARANTINED, DELETED)
# The changes after which a CDN must forget the image's renditions (domain/cdn.py).
PURGING = frozenset({TRASHED, DELETED, QUARANTINED, UPDATED})

Observe = Callable[[str, str], None]
"""Told (event type, outcome): ``queued`` (sent at once) or ``kept`` (left to the relay)."""

AfterCommit = Callable[[Owed], None]
"""Called between a change's commit and its jobs' send: a fault hook for tests only
(``programs/faults.py``)."""


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
        after_commit: AfterCommit | None = None,
        purge_cdn: bool = False,
        purge_hook: bool = False,
    ) -> None:
        self._jobs = jobs
        # A CDN to purge (its job for the worker), and/or the operator's cdn.purge webhook.
        self._purge_cdn = purge_cdn
        self._purge_hook = purge_hook
        self._outbox = outbox
        self._webhook_url = webhook_url
        # Without a secret nothing can be signed, so nothing is sent (and callback_url is refused).
        self.signing = signing
        self._callback_masters = callback_masters
        self._allow_private = allow_private
        self._clock = clock
        self._observe = observe
        self._after_commit = after_commit
        self._listeners: list[Callable[[str, ImageRecord], None]] = []
        # This process, as the feed names it: its listeners hear its own changes at once.
        self.origin = uuid.uuid4().hex[:16]

    def callback_secret(self, owner: str) -> str | None:
        """The key that signs ``owner``'s callbacks (None: no webhooks are sent)."""
        if not self.signing or not self._callback_masters:
            return None
        return callback_signing_key(self._callback_masters[0], owner)

    def listen(self, listener: Callable[[str, ImageRecord], None]) -> None:
        """``listener`` hears of every event this process stores, at once (in-process)."""
        self._listeners.append(listener)

    def owe(self, event_type: str, record: ImageRecord) -> Owed:
        """What storing ``record`` (the image as the change leaves it) owes: its feed entry,
        and a delivery job per webhook destination; pass it to the records' write."""
        change_id = uuid.uuid4().hex
        now = self._clock()
        purges = self._purges(change_id, event_type, record, now)
        if event_type not in EVENT_TYPES or not self.signing:
            return Owed(change_id, event_type, now, self.origin, purges)
        destinations: list[tuple[str, bool, str]] = []
        if self._webhook_url:  # the operator's own endpoint: wherever they put it
            destinations.append((self._webhook_url, True, OPERATOR_KEY))
        if record.callback_url:  # the caller's: public addresses only, unless allowed
            destinations.append((record.callback_url, self._allow_private, OWNER_KEY))
        data = image_view(record, gps=False)  # a position goes to its owner only
        body = {"type": event_type, "timestamp": format_timestamp(now), "data": data}
        message_id = f"msg_{change_id}"  # the webhook-id, whoever sends it, however often
        jobs = tuple(
            OwedJob(
                record.user_id,
                f"{change_id}.{key}",
                webhook_job(
                    message_id, url, body, private_ok=private_ok, key=key, owner=record.user_id
                ),
            )
            for url, private_ok, key in destinations
        )
        return Owed(change_id, event_type, now, self.origin, jobs + purges)

    def _purges(
        self, change_id: str, event_type: str, record: ImageRecord, now: datetime
    ) -> tuple[OwedJob, ...]:
        """The CDN purges a change owes: a job for the worker's CloudFront client, and the
        operator's ``cdn.purge`` webhook."""
        if event_type not in PURGING:
            return ()
        owner, image_id = record.user_id, record.image_id
        purges = []
        if self._purge_cdn:
            job = purge_job(f"purge_{change_id}", owner, image_id, event_type)
            purges.append(OwedJob(owner, f"{change_id}.purge", job))
        if self._purge_hook and self.signing and self._webhook_url:
            data = {"image_id": image_id, "paths": rendition_paths(owner, image_id)}
            body = {"type": PURGE_EVENT, "timestamp": format_timestamp(now), "data": data}
            hook = webhook_job(
                f"msg_{change_id}_purge",
                self._webhook_url,
                body,
                private_ok=True,
                key=OPERATOR_KEY,
                owner=owner,
            )
            purges.append(OwedJob(owner, f"{change_id}.purgehook", hook))
        return tuple(purges)

    async def send_operator_event(self, event_type: str, owner: str, data: dict[str, Any]) -> None:
        """An event that is no image's change, for the operator's endpoint only, queued now."""
        if not self.signing or not self._webhook_url:
            return
        body = {"type": event_type, "timestamp": format_timestamp(self._clock()), "data": data}
        job = webhook_job(
            f"msg_{uuid.uuid4().hex}",
            self._webhook_url,
            body,
            private_ok=True,
            key=OPERATOR_KEY,
            owner=owner,
        )
        try:
            await self._jobs.send(job)
        except BackendUnavailable as outage:
            log.warning("%s for %s lost: the queue refused it (%s)", event_type, owner, outage)
            self._observe(event_type, "lost")
            return
        self._observe(event_type, "queued")

    async def delivered(self, owed: Owed, record: ImageRecord) -> None:
        """After the change that ``owed`` is stored: tells this process's listeners, queues
        its jobs and takes them out of the outbox. A job SQS refuses stays there, for the
        relay; the change stands either way."""
        for listener in self._listeners:
            listener(owed.event_type, record)
        if not owed.jobs:
            return
        if self._after_commit is not None:
            self._after_commit(owed)
        sent: list[OwedJob] = []
        for owed_job in owed.jobs:
            job = owed_job.job
            try:
                await self._jobs.send(job)
            except BackendUnavailable as outage:
                log.warning(
                    "job %s (%s) for %s/%s left to the relay: the queue refused it (%s)",
                    job["id"],
                    owed.event_type,
                    record.user_id,
                    record.image_id,
                    outage.reason,
                )
                self._observe(owed.event_type, "kept")
                continue
            sent.append(owed_job)
            self._observe(owed.event_type, "queued")
        if sent:
            try:
                await self._outbox.drop_jobs(sent)
            except BackendUnavailable as outage:  # the relay sends them again: same webhook-id
                log.warning("sent webhook jobs left in the outbox: %s", outage.reason)


SHARE_VIEWED = "share.viewed"


async def share_viewed(
    events: ImageEvents, *, share_id: str, owner: str, views: int | None
) -> None:
    """Queues ``share.viewed`` for the operator's endpoint (``IMAGE_SERVICE_WEBHOOK_SHARE_VIEWED``).
    Sent as it happens, not through the outbox: a view changes no record to be atomic with, so
    one the queue refuses is logged and counted ``lost`` rather than kept."""
    await events.send_operator_event(
        SHARE_VIEWED, owner, {"share_id": share_id, "owner": owner, "views": views}
    )


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
