"""Deleting: to the trash (for ``trash_days``) or at once, restoring, purging, and emptying an
owner's trash. A delete marks the record first, removes the objects next and the record last,
so that wherever it stops the image is never served again and a retry finishes it."""

from __future__ import annotations

from image_service.domain import events
from image_service.domain.completion import abort_open_parts
from image_service.domain.errors import (
    Conflict,
    ImageNotFound,
)
from image_service.domain.events import ImageEvents
from image_service.domain.jobs import process_job
from image_service.domain.layout import (
    image_prefix,
    incoming_key,
    quarantine_key,
)
from image_service.domain.models import (
    ImageRecord,
    ImageStatus,
    ListFilter,
    Principal,
)
from image_service.domain.owners import owned, owner_for
from image_service.domain.policy import UploadPolicy
from image_service.domain.ports import (
    Clock,
    Jobs,
    Listing,
    Objects,
    Records,
    utc_now,
)
from image_service.domain.quota import Quota

# Trashed images read per page while the trash is emptied.
_TRASH_PAGE = 100
# What a DELETE moves to the trash: images with bytes worth keeping. A pending or rejected
# upload has nothing to restore, and is deleted at once.
TRASHABLE = frozenset({ImageStatus.READY, ImageStatus.PROCESSING, ImageStatus.QUARANTINED})


class Trash:
    def __init__(
        self,
        *,
        store: Objects,
        repository: Records,
        listing: Listing,
        jobs: Jobs,
        policy: UploadPolicy,
        quota: Quota,
        events: ImageEvents,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._repository = repository
        self._listing = listing
        self._jobs = jobs
        self._policy = policy
        self._quota = quota
        self.events = events
        self._clock = clock

    async def delete(
        self, principal: Principal, image_id: str, user_id: str | None, *, permanent: bool = False
    ) -> None:
        """Moves the image to the trash (``trash_days`` > 0, an image with bytes), or with
        ``permanent`` (and for uploads that never became images) deletes it at once."""
        owner = owner_for(principal, user_id)
        record = await owned(self._repository, owner, image_id)
        if not permanent and self._policy.trash_days > 0:
            if record.status is ImageStatus.TRASHED:
                return  # in the trash already: DELETE ?permanent=true purges it
            if record.status in TRASHABLE:
                owed = self.events.owe(events.TRASHED, record)
                trashed = await self._repository.trash(
                    record, trashable=TRASHABLE, now=self._clock(), owed=owed
                )
                if trashed is not None:
                    await self.events.delivered(owed, trashed)
                    return
                record = await owned(self._repository, owner, image_id)  # it changed: decide again
                if record.status is ImageStatus.TRASHED:
                    return
        await self._delete_now(record)

    async def restore(
        self, principal: Principal, image_id: str, user_id: str | None
    ) -> ImageRecord:
        """Takes an image out of the trash, into the status it had (processing: queued again)."""
        owner = owner_for(principal, user_id)
        record = await owned(self._repository, owner, image_id)
        restored = None
        owed = self.events.owe(events.RESTORED, record)
        if record.status is ImageStatus.TRASHED:
            restored = await self._repository.restore(record, now=self._clock(), owed=owed)
        if restored is None:  # not in the trash, or purged (404) or restored meanwhile
            current = await owned(self._repository, owner, image_id)
            raise Conflict(
                "Only an image in the trash can be restored.",
                code="not_in_trash",
                details={"status": current.status.value},
            )
        if restored.status is ImageStatus.PROCESSING:
            await self._jobs.send(process_job(restored))
        await self.events.delivered(owed, restored)
        return restored

    async def purge(self, record: ImageRecord) -> bool:
        """Deletes a trashed image for good, unless it left the trash meanwhile (a restore
        wins a race with a purge, or loses it whole: never half)."""
        marked = await self._repository.mark_deleting(
            record, updated_at=self._clock(), only_from=ImageStatus.TRASHED
        )
        if marked is None:
            return False
        await self.finish_delete(marked)
        return True

    async def empty_trash(self, principal: Principal, user_id: str | None) -> int:
        """Purges every image in the owner's trash; how many."""
        owner = owner_for(principal, user_id)
        purged = 0
        position = None
        while True:
            page, position = await self._listing.list_page(
                owner, ListFilter(status=ImageStatus.TRASHED), _TRASH_PAGE, position
            )
            for record in page:
                purged += await self.purge(record)
            if position is None:
                return purged

    async def _delete_now(self, record: ImageRecord) -> None:
        # Marked first, objects next, record last: wherever this stops, the record still names
        # the image as `deleting` (never served again), and a retried DELETE finishes the job.
        if record.status is not ImageStatus.DELETING:
            marked = await self._repository.mark_deleting(record, updated_at=self._clock())
            if marked is None:
                raise ImageNotFound(record.image_id)
            record = marked
        await self.finish_delete(record)

    async def finish_delete(self, record: ImageRecord) -> None:
        """Removes a `deleting` image's objects, then its record: by a DELETE, its retry, or
        the sweeper for a delete nobody retried."""
        await abort_open_parts(self._store, record)
        served = await self._store.keys_under(image_prefix(record.user_id, record.image_id))
        await self._store.delete([*served, incoming_key(record), quarantine_key(record)])
        owed = self.events.owe(events.DELETED, record)
        deleted = await self._repository.delete(record, owed=owed)
        self._quota.forget(record.user_id)
        if deleted:  # by this call: a concurrent one that got there first owes its own
            await self.events.delivered(owed, record)
