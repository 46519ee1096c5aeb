"""The image bucket: presigned URLs, verification reads, copies and deletes."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

import aiohttp
from botocore.exceptions import ClientError

from image_service.domain.errors import BackendUnavailable, ObjectGone
from image_service.domain.models import UploadedPart
from image_service.domain.ports import SignedPost, SignedPut, StoredObject
from image_service.storage.errors import backend_errors, error_code, http_status
from image_service.storage.presign import UrlSigner

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

BACKEND = "s3"
READ_CHUNK_BYTES = 256 * 1024
# A read by URL: signed for a minute, tried twice (connection errors and 5xx), like botocore's
# retries but fewer: a rendition request waits on it.
_READ_URL_SECONDS = 60
_READ_ATTEMPTS = 2


def _missing(exc: ClientError) -> bool:
    return error_code(exc) in {"404", "NoSuchKey", "NotFound"} or http_status(exc) == 404


def _no_such_upload(exc: ClientError) -> bool:
    """The multipart upload was completed or aborted (or never was)."""
    return error_code(exc) == "NoSuchUpload"


class ObjectStore:
    """One bucket, reached through one data client; URLs for clients are signed by a
    presigner (botocore's, or the direct one: ``presign.py``)."""

    def __init__(
        self,
        client: S3Client,
        presigner: UrlSigner,
        bucket: str,
        *,
        reader: UrlSigner | None = None,
        http: aiohttp.ClientSession | None = None,
        proxy: str | None = None,
    ) -> None:
        self._client = client
        self._presigner = presigner
        self.bucket = bucket
        # The direct transport only: reads on the request path (renditions) go by a URL signed
        # here for the service's own address and plain HTTP (through the proxy botocore would
        # use), a sixth of a botocore GetObject's CPU. Otherwise they are GetObject calls.
        self._reader = reader
        self._http = http
        self._proxy = proxy

    @property
    def url_origin(self) -> str:
        """Where the URLs this store hands out send browsers: for a page's security policy."""
        return self._presigner.origin

    async def presign_put(
        self,
        key: str,
        *,
        content_type: str,
        expires_in: int,
        size: int | None = None,
        checksum_sha256: str | None = None,
        refuse_overwrite: bool = False,
    ) -> SignedPut:
        """A PUT URL whose signature covers every header returned with it.

        A signed header must be sent exactly, so each one here is a rule S3 enforces: the type,
        the exact length, the checksum, and (``If-None-Match: *``) that nothing exists there yet.
        """
        headers = {"Content-Type": content_type}
        if size is not None:
            headers["Content-Length"] = str(size)
        if checksum_sha256 is not None:
            headers["x-amz-checksum-sha256"] = checksum_sha256
        if refuse_overwrite:
            headers["If-None-Match"] = "*"
        url = await self._presigner.url("PUT", key, expires_in=expires_in, headers=headers)
        return SignedPut(url=url, headers=headers)

    async def presign_post(
        self,
        key: str,
        *,
        content_type: str,
        expires_in: int,
        min_size: int,
        max_size: int,
        checksum_sha256: str | None = None,
    ) -> SignedPost:
        """A browser form upload whose policy pins the key, the type and the length range."""
        fields = {"Content-Type": content_type}
        conditions: list[Any] = [
            {"Content-Type": content_type},
            ["content-length-range", min_size, max_size],
        ]
        if checksum_sha256 is not None:
            fields["x-amz-checksum-sha256"] = checksum_sha256
            conditions.append({"x-amz-checksum-sha256": checksum_sha256})
        url, signed_fields = await self._presigner.post(
            self.bucket, key, expires_in=expires_in, fields=fields, conditions=conditions
        )
        return SignedPost(url=url, fields=signed_fields)

    # -- multipart uploads: the client PUTs parts by presigned URL; the service assembles them --

    async def create_multipart(self, key: str, *, content_type: str, checksums: bool) -> str:
        """Starts a multipart upload; its id. ``checksums``: every part carries its SHA-256,
        which S3 checks on arrival and records (so listing the parts shows each)."""
        options: dict[str, Any] = {"ChecksumAlgorithm": "SHA256"} if checksums else {}
        with backend_errors(BACKEND):
            response = await self._client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType=content_type, **options
            )
        return response["UploadId"]

    async def presign_part(
        self,
        key: str,
        *,
        upload_id: str,
        part_number: int,
        size: int,
        checksum_sha256: str | None,
        expires_in: int,
    ) -> SignedPut:
        """A URL for one part. The signature covers the upload id and part number (in the
        query), the exact length and, when given, the part's SHA-256: S3 refuses the part sent
        to another upload or position, longer or shorter, or with other bytes."""
        headers = {"Content-Length": str(size)}
        if checksum_sha256 is not None:
            headers["x-amz-checksum-sha256"] = checksum_sha256
        url = await self._presigner.url(
            "PUT",
            key,
            expires_in=expires_in,
            headers=headers,
            params=(("partNumber", str(part_number)), ("uploadId", upload_id)),
        )
        return SignedPut(url=url, headers=headers)

    async def uploaded_parts(self, key: str, upload_id: str) -> list[UploadedPart] | None:
        """The parts S3 holds, by number; None when the upload is no longer open (completed
        or aborted)."""
        parts: list[UploadedPart] = []
        with backend_errors(BACKEND):
            try:
                paginator = self._client.get_paginator("list_parts")
                async for page in paginator.paginate(
                    Bucket=self.bucket, Key=key, UploadId=upload_id
                ):
                    parts.extend(
                        UploadedPart(
                            part_number=part["PartNumber"],
                            size=part["Size"],
                            etag=part["ETag"],
                            checksum_sha256=part.get("ChecksumSHA256"),
                        )
                        for part in page.get("Parts", [])
                    )
            except ClientError as exc:
                if _no_such_upload(exc):
                    return None
                raise
        return sorted(parts, key=lambda part: part.part_number)

    async def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[UploadedPart]
    ) -> bool:
        """Assembles the parts into the object; False when the upload is no longer open (a
        concurrent completion assembled it, or it was aborted)."""
        listed: list[dict[str, Any]] = []
        for part in parts:
            entry: dict[str, Any] = {"PartNumber": part.part_number, "ETag": part.etag}
            if part.checksum_sha256 is not None:
                entry["ChecksumSHA256"] = part.checksum_sha256
            listed.append(entry)
        with backend_errors(BACKEND):
            try:
                await self._client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": listed},  # type: ignore[typeddict-item]  # plain dicts
                )
            except ClientError as exc:
                if _no_such_upload(exc):
                    return False
                raise
        return True

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """Discards the upload and its parts; already gone is done."""
        with backend_errors(BACKEND):
            try:
                await self._client.abort_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id
                )
            except ClientError as exc:
                if not (_no_such_upload(exc) or _missing(exc)):
                    raise

    async def presign_get(
        self, key: str, *, expires_in: int, content_type: str, content_disposition: str
    ) -> str:
        return await self._presigner.url(
            "GET",
            key,
            expires_in=expires_in,
            # Served with the type completion verified, never one S3 or a browser guesses.
            params=(
                ("response-content-type", content_type),
                ("response-content-disposition", content_disposition),
            ),
        )

    async def head(self, key: str) -> StoredObject | None:
        with backend_errors(BACKEND):
            try:
                response = await self._client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _missing(exc):
                    return None
                raise
        return StoredObject(
            size=response["ContentLength"],
            etag=response["ETag"],
            last_modified=response["LastModified"],
        )

    async def read(self, key: str, *, etag: str | None = None) -> AsyncGenerator[bytes]:
        """The object's bytes in chunks; with ``etag``, failing if it changed since it was
        inspected."""
        condition: dict[str, Any] = {"IfMatch": etag} if etag is not None else {}
        with backend_errors(BACKEND):
            try:
                response = await self._client.get_object(Bucket=self.bucket, Key=key, **condition)
            except ClientError as exc:
                if _missing(exc):
                    raise ObjectGone(key) from exc
                raise
            body = response["Body"]
            async with body:  # releases the connection however the reader stops
                async for chunk in body.iter_chunks(READ_CHUNK_BYTES):
                    yield chunk

    async def copy(self, source_key: str, target_key: str, *, etag: str, content_type: str) -> None:
        """Server-side copy of exactly the version that was verified (matched by ETag).

        The copy gets a full-object SHA-256 of its own, computed by S3: an upload assembled
        from parts has only a checksum of its parts' checksums, which no reader can verify
        (and which some emulators copy over as if it were the whole object's)."""
        with backend_errors(BACKEND):
            try:
                await self._client.copy_object(
                    Bucket=self.bucket,
                    Key=target_key,
                    CopySource={"Bucket": self.bucket, "Key": source_key},
                    CopySourceIfMatch=etag,
                    MetadataDirective="REPLACE",
                    ContentType=content_type,
                    ChecksumAlgorithm="SHA256",
                )
            except ClientError as exc:
                if _missing(exc):
                    raise ObjectGone(source_key) from exc
                raise

    async def get_if_exists(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and ETag, or None when there is no such object (one call)."""
        if self._reader is None or self._http is None:
            with backend_errors(BACKEND):
                try:
                    found = await self._client.get_object(Bucket=self.bucket, Key=key)
                except ClientError as exc:
                    if _missing(exc):
                        return None
                    raise
                async with found["Body"] as body:
                    return await body.read(), found["ETag"]
        url = await self._reader.url("GET", key, expires_in=_READ_URL_SECONDS)
        with backend_errors(BACKEND):
            for attempt in range(_READ_ATTEMPTS):
                try:
                    async with self._http.get(url, proxy=self._proxy) as response:
                        if response.status == 404:
                            return None
                        if response.status == 200:
                            return await response.read(), response.headers["ETag"]
                        failure = f"HTTP {response.status}"
                        if response.status < 500 or attempt + 1 == _READ_ATTEMPTS:
                            raise BackendUnavailable(BACKEND, failure)
                except (aiohttp.ClientConnectionError, TimeoutError):
                    if attempt + 1 == _READ_ATTEMPTS:
                        raise
        raise AssertionError("unreachable")  # every attempt returns or raises

    async def put_bytes(self, key: str, data: bytes | IO[bytes], *, content_type: str) -> str:
        """Stores ``data`` (bytes, or a seekable file read from its start) at ``key``; its
        ETag."""
        with backend_errors(BACKEND):
            response = await self._client.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType=content_type
            )
        return response["ETag"]

    async def keys_under(self, prefix: str) -> list[str]:
        """Every key under ``prefix``: for one image's few objects (see :meth:`listing`)."""
        return [key async for page in self.listing(prefix) for key, _ in page]

    async def listing(self, prefix: str) -> AsyncGenerator[list[tuple[str, datetime]]]:
        """The keys under ``prefix`` with their last change, a page (at most 1,000) at a time."""
        with backend_errors(BACKEND):
            paginator = self._client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                yield [(entry["Key"], entry["LastModified"]) for entry in page.get("Contents", [])]

    async def delete(self, keys: Sequence[str]) -> None:
        """Deletes the keys; absent keys are not an error, so a retried delete finishes."""
        if not keys:
            return
        with backend_errors(BACKEND):
            response = await self._client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True},
            )
            if response.get("Errors"):
                failed = response["Errors"][0]
                raise ClientError(
                    {
                        "Error": {
                            "Code": failed.get("Code", ""),
                            "Message": failed.get("Message", ""),
                        }
                    },
                    "DeleteObjects",
                )

    async def ping(self) -> None:
        with backend_errors(BACKEND):
            await self._client.head_bucket(Bucket=self.bucket)
