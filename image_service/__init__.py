"""Async image upload and metadata service: presigned direct-to-S3 uploads, DynamoDB metadata."""

__version__ = "0.1.0"
