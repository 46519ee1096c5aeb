"""The typed async client of the API (``ImageServiceClient``), its command line, and the load
test. Importable with aiohttp alone: nothing here needs the server's dependencies."""

from image_service.client.api import (
    ApiError,
    Image,
    ImageServiceClient,
    ImageServiceError,
    Page,
    ProcessingTimeout,
    StorageError,
    UploadTicket,
    Variant,
)

__all__ = [
    "ApiError",
    "Image",
    "ImageServiceClient",
    "ImageServiceError",
    "Page",
    "ProcessingTimeout",
    "StorageError",
    "UploadTicket",
    "Variant",
]
