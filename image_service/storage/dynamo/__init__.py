"""Image metadata in DynamoDB: the item codec, the group commit of creations, idempotency keys
and the repository of image records."""

from image_service.storage.dynamo.codec import EXPIRY_ATTRIBUTE, INDEXES
from image_service.storage.dynamo.idempotency import IdempotencyStore
from image_service.storage.dynamo.repository import ImageRepository

__all__ = ["EXPIRY_ATTRIBUTE", "INDEXES", "IdempotencyStore", "ImageRepository"]
