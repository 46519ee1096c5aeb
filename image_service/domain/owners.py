"""Who acts for whom: a caller touches their own images; an admin may act for any owner."""

from __future__ import annotations

from image_service.domain.errors import Forbidden, ImageNotFound
from image_service.domain.models import ImageRecord, Principal
from image_service.domain.ports import Records


def owner_for(principal: Principal, user_id: str | None) -> str:
    """The user whose images a request touches: the caller, or anyone for an admin."""
    if user_id is None or user_id == principal.user_id:
        return principal.user_id
    if principal.is_admin:
        return user_id
    raise Forbidden("Only an admin may act for another user.", details={"user_id": user_id})


async def owned(records: Records, owner: str, image_id: str) -> ImageRecord:
    """The owner's image, or 404: another owner's image is as absent as a missing one."""
    record = await records.get(owner, image_id)
    if record is None:
        raise ImageNotFound(image_id)
    return record
