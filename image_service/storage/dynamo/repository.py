"""Image metadata in DynamoDB: the repository of image records, as one object for the parts
of the service that need several of its rooms (the composition root hands the domain each room
as the port it needs).

The table's keys, indexes and items are the codec's (``codec.py``, which describes the design).
Its rooms, one job each:

- ``writes.py``: the optimistic write (a transaction on the revision read, re-applied on a
  race), and ``records.py``: the reads and the state transitions made with it;
- ``listing.py``: the list queries' planning;
- ``attention.py``: the sweeper's index, the outbox and the feed;
- ``maintenance.py``: the whole-table scans of the maintenance commands;
- ``workers.py``: the workers' heartbeats (the settings each live worker runs);
- ``apikeys.py``: the API keys (their lookups, their owners' lists);
- ``albums.py``: the albums and their pages of members;
- ``shares.py``: the share links, their lookups and their views;
- ``batch.py``: the bulk jobs and their progress.
"""

from __future__ import annotations

from image_service.storage.dynamo.albums import AlbumTable
from image_service.storage.dynamo.apikeys import ApiKeyTable
from image_service.storage.dynamo.attention import Attention
from image_service.storage.dynamo.batch import BatchTable
from image_service.storage.dynamo.listing import ImageListing
from image_service.storage.dynamo.maintenance import Scans
from image_service.storage.dynamo.records import ImageRecords
from image_service.storage.dynamo.shares import ShareTable
from image_service.storage.dynamo.workers import WorkerRegistry

__all__ = ["ImageRepository"]


class ImageRepository(
    ImageRecords,
    ImageListing,
    Attention,
    Scans,
    WorkerRegistry,
    ApiKeyTable,
    AlbumTable,
    ShareTable,
    BatchTable,
):
    """Every room of the table over one connection to it."""
