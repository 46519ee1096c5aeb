"""The typed async client of the API (``ImageServiceClient``), its command line, and the load
test. Importable with aiohttp alone: nothing here needs the server's dependencies."""

from image_service.client.api import ImageServiceClient
from image_service.client.parts import (
    ByteSource,
    BytesSource,
    FileSource,
    MultipartTicket,
    PartTicket,
)
from image_service.client.types import (
    Album,
    ApiError,
    ApiKey,
    Image,
    ImageServiceError,
    Page,
    Photo,
    Position,
    ProcessingTimeout,
    ShareLink,
    StorageError,
    UploadTicket,
    Variant,
)

__all__ = [
    "Album",
    "ApiError",
    "ApiKey",
    "ByteSource",
    "BytesSource",
    "FileSource",
    "Image",
    "ImageServiceClient",
    "ImageServiceError",
    "MultipartTicket",
    "Page",
    "PartTicket",
    "Photo",
    "Position",
    "ProcessingTimeout",
    "ShareLink",
    "StorageError",
    "UploadTicket",
    "Variant",
]
