"""Completing an upload: what really arrived is checked (assembled from its parts, sized, read
once, hashed, fully decoded) and copied under the image's own key, counted in its owner's quota
and handed to processing; or refused, whatever arrived removed. The client's completion and
S3's event for the same upload may race: one wins, and the other answers as it did."""

from __future__ import annotations

import asyncio
import base64
import logging
from contextlib import aclosing
from dataclasses import replace
from typing import Any, NoReturn

from image_service.domain import events
from image_service.domain.errors import (
    BackendUnavailable,
    Conflict,
    ImageNotFound,
    QuotaExceeded,
    UploadRejected,
)
from image_service.domain.events import ImageEvents
from image_service.domain.holds import Holds, SharedSlots
from image_service.domain.jobs import process_job
from image_service.domain.layout import (
    incoming_key,
)
from image_service.domain.models import (
    ImageRecord,
    ImageStatus,
    Principal,
)
from image_service.domain.owners import owned, owner_for
from image_service.domain.policy import UploadPolicy
from image_service.domain.ports import (
    Clock,
    Jobs,
    Objects,
    Records,
    StoredObject,
    utc_now,
)
from image_service.domain.quota import Quota
from image_service.domain.uploads import multipart_sizes
from image_service.imaging.inspect import (
    ImageRejected,
    inspect_image,
)
from image_service.imaging.spool import spool

log = logging.getLogger(__name__)


_COMPLETED = frozenset({ImageStatus.PROCESSING, ImageStatus.READY, ImageStatus.QUARANTINED})


def refusal(record: ImageRecord) -> UploadRejected | QuotaExceeded:
    """What completing a rejected upload answers, whichever completion decided it (the
    client's, or S3's event through the worker): the same status and code as the decision."""
    reason = record.rejection_reason or UploadRejected.code
    details = {"image_id": record.image_id, "reason": reason}
    if reason == QuotaExceeded.code:
        return QuotaExceeded("This upload would exceed the owner's quota.", details=details)
    return UploadRejected(
        "What was uploaded was refused; request a new upload URL.", code=reason, details=details
    )


def _in_the_trash() -> Conflict:
    return Conflict(
        "This image is in the trash: restore it; an upload cannot replace it.",
        code="image_trashed",
        details={"status": ImageStatus.TRASHED.value},
    )


async def abort_open_parts(store: Objects, record: ImageRecord) -> None:
    """Aborts the record's multipart upload if it is still open (its parts cost storage)."""
    if record.upload_id is not None:
        await store.abort_multipart(incoming_key(record), record.upload_id)


class Completion:
    def __init__(
        self,
        *,
        store: Objects,
        repository: Records,
        jobs: Jobs,
        policy: UploadPolicy,
        quota: Quota,
        events: ImageEvents,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._repository = repository
        self._jobs = jobs
        self._policy = policy
        self._quota = quota
        self.events = events
        self._clock = clock
        # Full decodes are CPU- and memory-heavy: a bounded number run at once, off the loop,
        # and no user holds them all.
        self._inspections = SharedSlots(policy.inspection_concurrency)
        self._completions = Holds(
            resource="completions",
            code="too_many_completions",
            per_user=policy.max_completions_per_user,
        )

    async def complete(
        self, principal: Principal, image_id: str, user_id: str | None
    ) -> ImageRecord:
        # Each completion reads its upload into a temporary file: bounded per caller here,
        # and per process by the inspection slots (S3's events, through the worker, are paced
        # by the worker's own concurrency).
        with self._completions.held(principal.user_id):
            return await self.complete_for(owner_for(principal, user_id), image_id)

    async def complete_for(self, owner: str, image_id: str) -> ImageRecord:
        """Verifies the upload and hands it to processing. Called by the API on the client's
        behalf, and by the worker for S3's own notification of the upload.

        Only a pending upload is completed. Its upload URL may still be live afterwards, but
        whatever is PUT with it then is never read: it is removed here, and completing again
        answers the image as it is (or refuses a trashed or deleted one), never a second
        verification, copy or count."""
        record = await owned(self._repository, owner, image_id)
        if record.status is ImageStatus.FETCHING:
            # An import: the worker that fetches it completes it (its bytes may already be
            # under the upload key, which S3's event announces: they are not to be removed).
            raise Conflict(
                "The image is being imported; it completes once fetched.", code="image_fetching"
            )
        if record.status is not ImageStatus.PENDING:
            await self._discard_upload(incoming_key(record))
        if record.status is ImageStatus.PROCESSING:
            # Again: the job may have been lost (the queue was down); one more is harmless.
            await self._jobs.send(process_job(record))
            return record
        if record.status in {ImageStatus.READY, ImageStatus.QUARANTINED}:
            return record
        if record.status is ImageStatus.REJECTED:
            raise refusal(record)
        if record.status is ImageStatus.TRASHED:
            raise _in_the_trash()
        if record.status is not ImageStatus.PENDING:  # deleting: as good as gone
            raise ImageNotFound(image_id)
        try:
            verified, published = await self._complete_pending(owner, record)
        except (Conflict, UploadRejected, BackendUnavailable) as exc:
            # The API and S3's own event may complete the same upload at once; whatever the
            # loser tripped over (a vanished upload key, a failed condition), the winner's
            # result stands and is the answer: the image, or the refusal of what arrived.
            current = await self._repository.get(owner, image_id)
            if current is not None and current.status in _COMPLETED:
                return current
            if (
                not isinstance(exc, UploadRejected)
                and current is not None
                and current.status is ImageStatus.REJECTED
            ):
                raise refusal(current) from exc
            raise
        if verified.status is ImageStatus.REJECTED:  # a concurrent completion refused it
            raise refusal(verified)
        if verified.status is ImageStatus.TRASHED:  # completed by another, then trashed
            raise _in_the_trash()
        if published:
            # Outside the race handling above: a queue that refuses the job must reach the
            # client as a 503 (completing again re-sends it; the sweeper finds the image if
            # nobody does), never as a success with the job lost.
            await self._jobs.send(process_job(verified))
        return verified

    async def _complete_pending(self, owner: str, record: ImageRecord) -> tuple[ImageRecord, bool]:
        """The image once verified and published, and whether this call published it (False:
        a concurrent completion did, and sent its job)."""
        image_id = record.image_id
        upload_key = incoming_key(record)
        if record.upload_id is not None:
            await self._assemble(record, upload_key)
        stored = await self._store.head(upload_key)
        if stored is None:
            current = await owned(self._repository, owner, image_id)
            if current.status is not ImageStatus.PENDING:  # a concurrent completion won
                return current, False
            raise Conflict(
                "Nothing has been uploaded for this image yet.",
                code="upload_missing",
                details={"image_id": image_id},
            )

        await self._check_size(record, stored, upload_key)
        verified = await self._verify_content(record, stored, upload_key)

        await self._store.copy(
            upload_key, record.s3_key, etag=stored.etag, content_type=record.content_type
        )
        verified = replace(verified, counted_bytes=stored.size)
        owed = self.events.owe(events.PROCESSING, verified)
        try:
            published = await self._repository.publish_counted(
                verified,
                ImageStatus.PENDING,
                max_images=self._policy.max_images_per_user,
                max_bytes=self._policy.max_bytes_per_user,
                owed=owed,
            )
        except QuotaExceeded:
            await self._store.delete([record.s3_key])
            await self._reject_over_quota(record, upload_key)
            raise
        finally:
            self._quota.forget(owner)
        if not published:
            now_stored = await self._repository.get(owner, image_id)
            if now_stored is None or now_stored.status is ImageStatus.DELETING:
                # Deleted (or being deleted) while this was verifying: the copy made above may
                # postdate the delete's listing, so it goes, and so does the upload.
                await self._store.delete([record.s3_key, upload_key])
                raise ImageNotFound(image_id)
            if now_stored.status is not ImageStatus.PENDING:
                # A concurrent completion won with the same bytes (and the image may have
                # moved on since: processed, trashed): its answer stands.
                return now_stored, False
            raise Conflict("The image changed during completion.", code="image_changed")
        await self.events.delivered(owed, verified)
        await self._discard_upload(upload_key)
        return verified, True

    async def _assemble(self, record: ImageRecord, upload_key: str) -> None:
        """Completes a multipart upload on S3 once every part it declared is there, each at its
        length (and with its declared checksum). Already assembled (a concurrent completion,
        or S3's event for it): nothing to do, the object is there."""
        upload_id, sizes = multipart_sizes(record)
        uploaded = await self._store.uploaded_parts(upload_key, upload_id)
        if uploaded is None:
            return
        held = {part.part_number: part for part in uploaded}
        missing = [n for n in range(1, len(sizes) + 1) if n not in held]
        if missing:
            raise Conflict(
                "Some parts have not been uploaded yet; GET /images/{id}/parts lists them.",
                code="parts_missing",
                details={
                    "image_id": record.image_id,
                    "missing": missing[:100],
                    "missing_count": len(missing),
                },
            )
        parts = [held[n] for n in range(1, len(sizes) + 1)]
        # S3 itself refused other lengths and checksums (both signed into the part URLs); an
        # S3 that checks no signature is held to the same contract here.
        wrong_sizes = [p.part_number for p in parts if p.size != sizes[p.part_number - 1]]
        if wrong_sizes:
            await self._reject(
                record,
                upload_key,
                "size_mismatch",
                "Some parts' sizes differ from the declared part size.",
                {"parts": wrong_sizes[:100], "part_size": record.part_size},
            )
        if record.part_checksums:
            # S3 reports the checksum it verified on arrival (moto records none: there, the
            # whole file's checksum, when declared, is the check that remains).
            wrong = [
                p.part_number
                for p in parts
                if p.checksum_sha256 not in {None, record.part_checksums[p.part_number - 1]}
            ]
            if wrong:
                await self._reject(
                    record,
                    upload_key,
                    "checksum_mismatch",
                    "Some parts' bytes do not match their declared SHA-256 checksums.",
                    {"parts": wrong[:100]},
                )
            # A store that does not list the checksums it verified (SeaweedFS) still wants
            # them named on completion: the declared ones, which the part URLs signed.
            parts = [
                part
                if part.checksum_sha256 is not None
                else replace(part, checksum_sha256=record.part_checksums[part.part_number - 1])
                for part in parts
            ]
        await self._store.complete_multipart(upload_key, upload_id, parts)

    async def _check_size(self, record: ImageRecord, stored: StoredObject, upload_key: str) -> None:
        policy = self._policy
        if record.upload_id is not None:
            limit_name, limit = "max_multipart_bytes", policy.max_multipart_bytes
        else:
            limit_name, limit = "max_upload_bytes", policy.max_upload_bytes
        if stored.size > limit:
            await self._reject(
                record,
                upload_key,
                "file_too_large",
                "The uploaded file exceeds the maximum upload size.",
                {"size": stored.size, limit_name: limit},
            )
        if record.declared_size is not None and stored.size != record.declared_size:
            await self._reject(
                record,
                upload_key,
                "size_mismatch",
                "The uploaded file's size differs from the declared size.",
                {"size": stored.size, "declared_size": record.declared_size},
            )

    async def _verify_content(
        self, record: ImageRecord, stored: StoredObject, upload_key: str
    ) -> ImageRecord:
        """Reads the object once (the version that was sized), hashes it, and inspects it,
        in bounded memory (``spool.py``): a gigabyte upload costs its decode, which the pixel
        limits bound, not its size."""
        # The slot covers the spool too: a process holds as many upload copies on disk as it
        # runs decodes, however many completions arrive at once.
        async with self._inspections.held(record.user_id):
            async with aclosing(self._store.read(upload_key, etag=stored.etag)) as chunks:
                upload = await spool(chunks)
            with upload:
                try:
                    inspection = await asyncio.get_running_loop().run_in_executor(
                        None,
                        inspect_image,
                        upload.file,
                        record.content_type,
                        self._policy.inspection,
                    )
                except ImageRejected as rejection:
                    rejected: ImageRejected | None = rejection
                else:
                    rejected = None
        if rejected is not None:  # refused outside the slot: its writes need no decode slot
            await self._reject(
                record, upload_key, rejected.code, rejected.message, rejected.details
            )
        checksum = base64.b64encode(upload.sha256_digest).decode("ascii")
        declared = record.declared_checksum_sha256
        if declared is not None and checksum != declared:
            await self._reject(
                record,
                upload_key,
                "checksum_mismatch",
                "The uploaded bytes do not match the declared SHA-256 checksum.",
                {"declared": declared, "actual": checksum},
            )
        return replace(
            record,
            status=ImageStatus.PROCESSING,
            size=stored.size,
            width=inspection.width,
            height=inspection.height,
            sha256=upload.sha256,
            uploaded_sha256=upload.sha256,
            # The parts are one object now: nothing left to resume.
            upload_id=None,
            part_size=None,
            part_checksums=[],
            updated_at=self._clock(),
        )

    async def _reject(
        self,
        record: ImageRecord,
        upload_key: str,
        code: str,
        message: str,
        details: dict[str, Any],
    ) -> NoReturn:
        await self._refuse(record, upload_key, code)
        raise UploadRejected(message, code=code, details=details)

    async def _reject_over_quota(self, record: ImageRecord, upload_key: str) -> None:
        await self._refuse(record, upload_key, QuotaExceeded.code)

    async def _refuse(self, record: ImageRecord, upload_key: str, code: str) -> None:
        """Records the refusal, then removes what arrived. In that order: a concurrent
        completion that finds the upload gone reads the refusal, never a pending image whose
        bytes vanished (which it could only answer with a 503); and if the removal fails, the
        image is refused all the same, and completing again removes the upload."""
        rejected = replace(
            record, status=ImageStatus.REJECTED, rejection_reason=code, updated_at=self._clock()
        )
        owed = self.events.owe(events.REJECTED, rejected)
        if await self._repository.replace_if_status(rejected, ImageStatus.PENDING, owed=owed):
            await self.events.delivered(owed, rejected)
        await abort_open_parts(self._store, record)
        await self._store.delete([upload_key])

    async def _discard_upload(self, upload_key: str) -> None:
        try:
            await self._store.delete([upload_key])
        except BackendUnavailable as exc:
            # The image is already safe under its own key; a leftover upload is only garbage.
            log.warning("could not remove upload %s: %s", upload_key, exc.reason)

    def accepts(self, content_type: str) -> bool:
        """Whether the service takes this content type (migrate asks before it completes an image
        the original service stored)."""
        return content_type in self._policy.allowed_content_types
