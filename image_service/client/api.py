"""`ImageServiceClient`: the async Python client of the whole API, typed.

It follows the service's own protocol, so callers never handle presigned URLs by hand: ask for an
upload URL, send the bytes straight to S3 (a signed PUT or a POST policy, with progress), complete,
wait until processed, list page by page, download, delete. The CLI's ``upload``/``list``/
``download``/``delete`` commands, the load-test tool and the tests all speak through it.

    async with ImageServiceClient("http://127.0.0.1:8080", token) as images:
        image = await images.upload(data, tags=["holiday"], wait=True)
        async for image in images.iter_images(tag="holiday"):
            ...

Errors are typed: :class:`ApiError` carries the service's JSON envelope (status, code, message,
details, request id, ``Retry-After``); :class:`StorageError` is S3 refusing the bytes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from types import TracebackType
from typing import Any, Self

import aiohttp
from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload

from image_service.client.parts import (
    ByteSource,
    BytesSource,
    MultipartTicket,
    PartTicket,
    digests,
)
from image_service.formats import content_type_from_magic

# Bytes written to S3 between two progress reports.
PROGRESS_CHUNK_BYTES = 64 * 1024
DEFAULT_TIMEOUT_SECONDS = 60.0
# The longest the service holds one `?wait=ready` request.
MAX_WAIT_SECONDS = 20
# Above this, `upload` sends the bytes in parts (below the service's 20 MiB single-PUT limit).
MULTIPART_THRESHOLD_BYTES = 16 * 1024 * 1024
DEFAULT_PART_BYTES = 8 * 1024 * 1024
DEFAULT_PARTS_AT_ONCE = 4
# A part whose send failed on the network (or whose URL expired) is tried this many times.
_PART_ATTEMPTS = 3
PROCESSING_STATUSES = frozenset({"pending", "processing"})

Progress = Callable[[int, int], None]
"""Called with (bytes sent so far, total bytes) while an upload is written to S3."""


class ImageServiceError(Exception):
    """Base of everything this client raises for an answer it did not want."""


class ApiError(ImageServiceError):
    """The service answered with its JSON error envelope (or, failing that, a bare status)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        *,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = dict(details or {})
        self.request_id = request_id
        self.retry_after = retry_after


class StorageError(ImageServiceError):
    """S3 refused an upload or a download (expired URL, wrong length, second upload...)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"S3 answered {status}: {body[:300]}")
        self.status = status
        self.body = body


class ProcessingTimeout(ImageServiceError):
    """The image was still pending or processing when the wait ended."""


@dataclass(frozen=True, slots=True)
class UploadTicket:
    """Where and how to send one image's bytes; valid until ``expires_at``."""

    image_id: str
    upload_url: str
    method: str  # "PUT" or "POST"
    headers: dict[str, str]
    fields: dict[str, str]
    expires_at: datetime

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> UploadTicket:
        return cls(
            image_id=body["image_id"],
            upload_url=body["upload_url"],
            method=body["method"],
            headers=dict(body.get("headers") or {}),
            fields=dict(body.get("fields") or {}),
            expires_at=_timestamp(body["expires_at"]),
        )


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    format: str
    content_type: str
    width: int
    height: int
    size: int


@dataclass(frozen=True, slots=True)
class Position:
    latitude: float
    longitude: float
    altitude: float | None = None


@dataclass(frozen=True, slots=True)
class Photo:
    """What the photo's EXIF says (each field when known); ``gps`` only for its owner, and
    only where the service keeps it."""

    taken_at: datetime | None = None
    camera: str | None = None
    lens: str | None = None
    f_number: float | None = None
    exposure_time: float | None = None
    iso: int | None = None
    focal_length: float | None = None
    orientation: int | None = None
    gps: Position | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Photo:
        taken, gps = body.get("taken_at"), body.get("gps")
        return cls(
            taken_at=None if taken is None else _timestamp(taken),
            camera=body.get("camera"),
            lens=body.get("lens"),
            f_number=body.get("f_number"),
            exposure_time=body.get("exposure_time"),
            iso=body.get("iso"),
            focal_length=body.get("focal_length"),
            orientation=body.get("orientation"),
            gps=None if gps is None else Position(**gps),
        )


@dataclass(frozen=True, slots=True)
class Image:
    image_id: str
    user_id: str
    status: str
    content_type: str
    tags: tuple[str, ...]
    description: str
    upload_time: datetime
    updated_at: datetime
    variants: tuple[Variant, ...] = ()
    size: int | None = None
    width: int | None = None
    height: int | None = None
    sha256: str | None = None
    filename: str | None = None
    placeholder: str | None = None
    thumbhash: str | None = None  # a blurred preview, base64 ThumbHash
    photo: Photo | None = None
    # An upload with skip_existing answered this image, already there, instead of sending.
    existing: bool = False

    @property
    def processed(self) -> bool:
        return self.status not in PROCESSING_STATUSES

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Image:
        return cls(
            image_id=body["image_id"],
            user_id=body["user_id"],
            status=body["status"],
            content_type=body["content_type"],
            tags=tuple(body.get("tags") or ()),
            description=body.get("description") or "",
            upload_time=_timestamp(body["upload_time"]),
            updated_at=_timestamp(body["updated_at"]),
            variants=tuple(
                Variant(
                    name=v["name"],
                    format=v["format"],
                    content_type=v["content_type"],
                    width=v["width"],
                    height=v["height"],
                    size=v["size"],
                )
                for v in body.get("variants") or ()
            ),
            size=body.get("size"),
            width=body.get("width"),
            height=body.get("height"),
            sha256=body.get("sha256"),
            filename=body.get("filename"),
            placeholder=body.get("placeholder"),
            thumbhash=body.get("thumbhash"),
            photo=None if body.get("photo") is None else Photo.from_json(body["photo"]),
        )


@dataclass(frozen=True, slots=True)
class Page:
    items: tuple[Image, ...]
    next_cursor: str | None


def _timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text)


class _ProgressPayload(Payload):
    """Bytes written in chunks, reporting after each: a progress bar for a direct S3 upload.
    Its size is known, so the request still carries a Content-Length (S3 needs one). Each
    chunk's write yields to the event loop, so even a large part never holds it."""

    _value: bytes

    def __init__(self, data: bytes, progress: Progress | None, **kwargs: Any) -> None:
        super().__init__(data, **kwargs)
        self._size = len(data)
        self._progress = progress

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return self._value.decode(encoding, errors)

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        view = memoryview(self._value)
        if content_length is not None:
            view = view[:content_length]
        total = len(view)
        for start in range(0, total, PROGRESS_CHUNK_BYTES):
            await writer.write(view[start : start + PROGRESS_CHUNK_BYTES])
            if self._progress is not None:
                self._progress(min(start + PROGRESS_CHUNK_BYTES, total), total)
        if total == 0 and self._progress is not None:
            self._progress(0, 0)


class ImageServiceClient:
    """One API base URL, one bearer token, one connection pool; use it as an async context
    manager (or call :meth:`close`). Pass ``session`` to share a pool with other clients: it is
    then the caller's to close."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._auth = {"Authorization": f"Bearer {token}"}
        self._owns_session = session is None
        self._session = session or aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout)
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session:
            await self._session.close()

    # -- uploads -----------------------------------------------------------------------------

    async def create_upload(
        self,
        content_type: str,
        *,
        size: int | None = None,
        tags: Iterable[str] = (),
        description: str = "",
        filename: str | None = None,
        checksum_sha256: str | None = None,
        method: str = "PUT",
        idempotency_key: str | None = None,
    ) -> UploadTicket:
        """``POST /images/upload``. Declaring ``size`` (and ``checksum_sha256``, base64) gets
        them signed into a PUT URL, so S3 itself refuses other bytes or a second upload."""
        body = _upload_body(
            content_type,
            method,
            tags=tags,
            description=description,
            filename=filename,
            size=size,
            checksum_sha256=checksum_sha256,
        )
        return UploadTicket.from_json(await self._post_upload(body, idempotency_key))

    async def _post_upload(self, body: dict[str, Any], idempotency_key: str | None) -> Any:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return await self._json("POST", "/images/upload", json=body, headers=headers)

    async def send(
        self, ticket: UploadTicket, data: bytes, *, progress: Progress | None = None
    ) -> None:
        """Sends the bytes straight to S3 as the ticket says: a PUT with exactly its headers, or
        a form POST with its fields and the file last (S3 ignores fields after the file)."""
        content_type = ticket.headers.get("Content-Type") or ticket.fields.get("Content-Type")
        payload = _ProgressPayload(
            data, progress, content_type=content_type or "application/octet-stream"
        )
        if ticket.method == "POST":
            form = aiohttp.MultipartWriter("form-data")
            for name, value in ticket.fields.items():
                form.append(value).set_content_disposition("form-data", name=name)
            part = form.append_payload(payload)
            part.set_content_disposition("form-data", name="file", filename="upload")
            request = self._session.post(ticket.upload_url, data=form)
        else:
            # aiohttp writes the real Content-Length itself; a signed one must equal it anyway.
            headers = {k: v for k, v in ticket.headers.items() if k.lower() != "content-length"}
            request = self._session.put(ticket.upload_url, data=payload, headers=headers)
        async with request as response:
            if response.status not in (200, 201, 204):
                raise StorageError(response.status, await response.text())

    async def create_multipart_upload(
        self,
        content_type: str,
        size: int,
        *,
        part_size: int = DEFAULT_PART_BYTES,
        part_checksums: Iterable[str] = (),
        checksum_sha256: str | None = None,
        tags: Iterable[str] = (),
        description: str = "",
        filename: str | None = None,
        if_exists: str = "create",
        idempotency_key: str | None = None,
    ) -> MultipartTicket | Image:
        """``POST /images/upload`` for a multipart upload: a URL per part, each signing its
        length (and its SHA-256 when ``part_checksums`` are given). With ``if_exists="return"``
        and ``checksum_sha256``, the caller's image of the same bytes if there is one."""
        body = _upload_body(
            content_type,
            "MULTIPART",
            tags=tags,
            description=description,
            filename=filename,
            size=size,
            checksum_sha256=checksum_sha256,
            part_size=part_size,
            if_exists=if_exists,
        )
        checksums = list(part_checksums)
        if checksums:
            body["part_checksums"] = checksums
        answer = await self._post_upload(body, idempotency_key)
        return (
            MultipartTicket.from_json(answer) if "upload_id" in answer else Image.from_json(answer)
        )

    async def parts(self, image_id: str) -> MultipartTicket:
        """``GET /images/{id}/parts``: the parts still to send, with fresh URLs."""
        return MultipartTicket.from_json(await self._json("GET", f"/images/{image_id}/parts"))

    async def send_parts(
        self,
        ticket: MultipartTicket,
        source: ByteSource,
        *,
        parts_at_once: int = DEFAULT_PARTS_AT_ONCE,
        progress: Progress | None = None,
    ) -> None:
        """PUTs the ticket's parts, ``parts_at_once`` at a time, each read from ``source`` when
        its turn comes. A part that fails on the network, or whose URL expired meanwhile, is
        sent again (with a fresh URL from the service)."""
        slots = asyncio.Semaphore(parts_at_once)
        sent = {0: ticket.uploaded_bytes}

        def reporter(number: int) -> Progress:
            def report(done: int, _total: int) -> None:
                sent[number] = done
                if progress is not None:
                    progress(sum(sent.values()), source.size)

            return report

        async def send(part: PartTicket) -> None:
            async with slots:
                data = await source.read((part.part_number - 1) * ticket.part_size, part.size)
                for attempt in range(_PART_ATTEMPTS):
                    try:
                        await self._put_part(part, data, reporter(part.part_number))
                        return
                    except (StorageError, aiohttp.ClientConnectionError) as exc:
                        expired = isinstance(exc, StorageError) and exc.status == 403
                        if attempt + 1 == _PART_ATTEMPTS or (
                            isinstance(exc, StorageError) and not expired and exc.status < 500
                        ):
                            raise
                        if expired:  # signed too long ago: ask for this part's URL again
                            fresh = await self.parts(ticket.image_id)
                            part = next(p for p in fresh.parts if p.part_number == part.part_number)

        await asyncio.gather(*(send(part) for part in ticket.parts))

    async def _put_part(self, part: PartTicket, data: bytes, progress: Progress) -> None:
        headers = {k: v for k, v in part.headers.items() if k.lower() != "content-length"}
        payload = _ProgressPayload(data, progress, content_type="application/octet-stream")
        async with self._session.put(part.url, data=payload, headers=headers) as response:
            if response.status != 200:
                raise StorageError(response.status, await response.text())

    async def upload_multipart(
        self,
        source: ByteSource,
        content_type: str,
        *,
        tags: Iterable[str] = (),
        description: str = "",
        filename: str | None = None,
        part_size: int = DEFAULT_PART_BYTES,
        parts_at_once: int = DEFAULT_PARTS_AT_ONCE,
        skip_existing: bool = False,
        progress: Progress | None = None,
        started: Callable[[MultipartTicket], None] | None = None,
        wait: bool = False,
        max_wait: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> Image:
        """A whole upload in parts: every part's SHA-256 and the file's are computed first
        (one pass), so S3 checks each part and the service the whole. ``started`` is told the
        ticket before any part is sent (to keep it for a resume)."""
        sums = await digests(source, part_size)
        answer = await self.create_multipart_upload(
            content_type,
            source.size,
            part_size=part_size,
            part_checksums=sums.parts,
            checksum_sha256=sums.whole,
            tags=tags,
            description=description,
            filename=filename,
            if_exists="return" if skip_existing else "create",
        )
        if isinstance(answer, Image):
            return replace(answer, existing=True)
        if started is not None:
            started(answer)
        await self.send_parts(answer, source, parts_at_once=parts_at_once, progress=progress)
        return await self._completed(answer.image_id, wait=wait, max_wait=max_wait)

    async def resume_upload(
        self,
        image_id: str,
        source: ByteSource,
        *,
        parts_at_once: int = DEFAULT_PARTS_AT_ONCE,
        progress: Progress | None = None,
        wait: bool = False,
        max_wait: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> Image:
        """Finishes an interrupted multipart upload: sends only the parts S3 does not hold."""
        ticket = await self.parts(image_id)
        await self.send_parts(ticket, source, parts_at_once=parts_at_once, progress=progress)
        return await self._completed(image_id, wait=wait, max_wait=max_wait)

    async def _completed(self, image_id: str, *, wait: bool, max_wait: float) -> Image:
        image = await self.complete(image_id)
        if wait:
            image = await self.wait_until_processed(image.image_id, max_wait=max_wait)
        return image

    async def check(self, checksums: Iterable[str]) -> dict[str, str | None]:
        """``POST /images/check``: for each SHA-256 (base64 or hex, up to 500), the id of an
        image of the caller's with those bytes, or None."""
        body = await self._json("POST", "/images/check", json={"checksums_sha256": list(checksums)})
        return {r["checksum_sha256"]: r["image_id"] for r in body["results"]}

    async def complete(self, image_id: str) -> Image:
        """``POST /images/{id}/complete``: the service verifies what arrived and queues it."""
        return Image.from_json(await self._json("POST", f"/images/{image_id}/complete"))

    async def upload(
        self,
        data: bytes,
        *,
        content_type: str | None = None,
        tags: Iterable[str] = (),
        description: str = "",
        filename: str | None = None,
        method: str = "PUT",
        progress: Progress | None = None,
        wait: bool = False,
        max_wait: float = DEFAULT_TIMEOUT_SECONDS,
        skip_existing: bool = False,
        multipart_threshold: int = MULTIPART_THRESHOLD_BYTES,
        part_size: int = DEFAULT_PART_BYTES,
        parts_at_once: int = DEFAULT_PARTS_AT_ONCE,
    ) -> Image:
        """The whole upload: URL (the exact size and SHA-256 signed in), bytes to S3,
        completion, and with ``wait`` the processed image. ``content_type`` defaults to what
        the bytes are. Above ``multipart_threshold`` bytes, the upload goes in parts,
        ``parts_at_once`` in parallel. ``skip_existing``: an image of the caller's with the
        same bytes is the answer, and nothing is sent."""
        declared = content_type or content_type_from_magic(data[:64])
        if declared is None:
            raise ValueError("not a recognised image: give content_type")
        if len(data) > multipart_threshold:
            return await self.upload_multipart(
                BytesSource(data),
                declared,
                tags=tags,
                description=description,
                filename=filename,
                part_size=part_size,
                parts_at_once=parts_at_once,
                skip_existing=skip_existing,
                progress=progress,
                wait=wait,
                max_wait=max_wait,
            )
        body = _upload_body(
            declared,
            method,
            tags=tags,
            description=description,
            filename=filename,
            size=len(data) if method == "PUT" else None,
            checksum_sha256=_sha256(data) if skip_existing or method == "PUT" else None,
            if_exists="return" if skip_existing else "create",
        )
        answer = await self._post_upload(body, None)
        if "upload_url" not in answer:  # skip_existing: already there
            return replace(Image.from_json(answer), existing=True)
        ticket = UploadTicket.from_json(answer)
        await self.send(ticket, data, progress=progress)
        return await self._completed(ticket.image_id, wait=wait, max_wait=max_wait)

    async def wait_until_processed(
        self, image_id: str, *, max_wait: float = DEFAULT_TIMEOUT_SECONDS
    ) -> Image:
        """The image once it leaves pending/processing (ready, rejected, quarantined...): the
        service holds each request until then (``?wait=ready``, up to 20 s a request)."""
        deadline = time.monotonic() + max_wait
        while True:
            remaining = deadline - time.monotonic()
            params = {
                "wait": "ready",
                "timeout": str(max(0, min(MAX_WAIT_SECONDS, int(remaining)))),
            }
            image = Image.from_json(await self._json("GET", f"/images/{image_id}", params=params))
            if image.processed:
                return image
            if time.monotonic() >= deadline:
                raise ProcessingTimeout(f"{image_id} still {image.status} after {max_wait} s")

    # -- reading and changing ----------------------------------------------------------------

    async def get(self, image_id: str) -> Image:
        return Image.from_json(await self._json("GET", f"/images/{image_id}"))

    async def list(
        self,
        *,
        tags: Iterable[str] = (),
        status: str | None = None,
        start: date | datetime | None = None,
        end: date | datetime | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        sort: str | None = None,
        taken_from: date | datetime | None = None,
        taken_to: date | datetime | None = None,
    ) -> Page:
        """One page, newest first (``sort="taken_at"``: newest taken). Every tag must match; a
        bare ``end`` (or ``taken_to``) date includes its day; ``status="trashed"``: the trash."""
        query: list[tuple[str, str]] = [("tag", tag) for tag in tags]
        for name, value in (
            ("status", status),
            ("start_date", start),
            ("end_date", end),
            ("sort", sort),
            ("taken_from", taken_from),
            ("taken_to", taken_to),
        ):
            if value is not None:
                query.append((name, value if isinstance(value, str) else value.isoformat()))
        if limit is not None:
            query.append(("limit", str(limit)))
        if cursor is not None:
            query.append(("cursor", cursor))
        body = await self._json("GET", "/images", params=query)
        return Page(
            items=tuple(Image.from_json(item) for item in body["items"]),
            next_cursor=body["next_cursor"],
        )

    async def iter_images(
        self,
        *,
        tags: Iterable[str] = (),
        status: str | None = None,
        start: date | datetime | None = None,
        end: date | datetime | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[Image]:
        """Every matching image, following the cursor page by page."""
        wanted = tuple(tags)
        cursor: str | None = None
        while True:
            page = await self.list(
                tags=wanted, status=status, start=start, end=end, limit=page_size, cursor=cursor
            )
            for image in page.items:
                yield image
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def update(
        self, image_id: str, *, tags: Iterable[str] | None = None, description: str | None = None
    ) -> Image:
        body: dict[str, Any] = {}
        if tags is not None:
            body["tags"] = list(tags)
        if description is not None:
            body["description"] = description
        return Image.from_json(await self._json("PATCH", f"/images/{image_id}", json=body))

    async def download_url(
        self, image_id: str, *, variant: str | None = None, format: str | None = None
    ) -> str:
        """A short-lived presigned GET of the original, or of ``variant`` in ``format``."""
        params = {}
        if variant is not None:
            params["variant"] = variant
        if format is not None:
            params["format"] = format
        body = await self._json("GET", f"/images/{image_id}/download", params=params)
        url: str = body["download_url"]
        return url

    async def download(
        self, image_id: str, *, variant: str | None = None, format: str | None = None
    ) -> bytes:
        """The bytes themselves, fetched from S3 through a fresh download URL."""
        url = await self.download_url(image_id, variant=variant, format=format)
        async with self._session.get(url) as response:
            if response.status != 200:
                raise StorageError(response.status, await response.text())
            return await response.read()

    async def render_url(
        self,
        image_id: str,
        *,
        width: int | None = None,
        height: int | None = None,
        fit: str = "inside",
        format: str = "auto",
        quality: int | None = None,
        preset: str | None = None,
    ) -> str:
        """The signed delivery URL of a rendition (no token needed to fetch it until it
        expires): ``width``/``height`` from the service's allowlist, or a named ``preset``."""
        params: dict[str, str] = {"fit": fit, "format": format}
        for name, value in (("w", width), ("h", height), ("q", quality), ("preset", preset)):
            if value is not None:
                params[name] = str(value)
        body = await self._json("GET", f"/images/{image_id}/render", params=params)
        url: str = body["url"]
        return url

    async def render(
        self, image_id: str, *, accept: str = "image/avif,image/webp,image/jpeg", **spec: Any
    ) -> tuple[bytes, str]:
        """A rendition's bytes and content type (``spec`` as for :meth:`render_url`); with
        ``format="auto"`` the service picks by ``accept``."""
        url = await self.render_url(image_id, **spec)
        async with self._session.get(url, headers={"Accept": accept}) as response:
            if response.status != 200:
                raise StorageError(response.status, await response.text())
            return await response.read(), response.content_type

    async def delete(self, image_id: str, *, permanent: bool = False) -> None:
        """Into the trash (restorable until purged), or with ``permanent`` gone at once."""
        params = {"permanent": "true"} if permanent else None
        await self._json("DELETE", f"/images/{image_id}", params=params)

    async def restore(self, image_id: str) -> Image:
        """Out of the trash, as it was."""
        return Image.from_json(await self._json("POST", f"/images/{image_id}/restore"))

    async def empty_trash(self) -> int:
        """Deletes everything in the trash for good; how many images."""
        body = await self._json("DELETE", "/trash")
        purged: int = body["purged"]
        return purged

    async def callback_secret(self) -> str:
        """The key that signs this caller's ``callback_url`` deliveries (``whsec_…``): verify
        them with :func:`image_service.client.webhooks.verify` or any Standard Webhooks
        library."""
        body = await self._json("GET", "/webhooks/secret")
        secret: str = body["secret"]
        return secret

    async def ready(self) -> dict[str, Any]:
        """``GET /ready``: every backend's check; raises :class:`ApiError` (503) naming those
        that fail."""
        checks: dict[str, Any] = await self._json("GET", "/ready", authenticated=False)
        return checks

    # -- the wire ------------------------------------------------------------------------------

    async def _json(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        authenticated: bool = True,
        **kwargs: Any,
    ) -> Any:
        sent = {**(self._auth if authenticated else {}), **(headers or {})}
        async with self._session.request(
            method, self.base_url + path, headers=sent, **kwargs
        ) as response:
            body = None
            if response.content_type == "application/json":
                body = await response.json()
            if response.status >= 400:
                raise _api_error(response, body)
            return body


def _upload_body(
    content_type: str,
    method: str,
    *,
    tags: Iterable[str],
    description: str,
    filename: str | None,
    size: int | None,
    checksum_sha256: str | None,
    **more: Any,
) -> dict[str, Any]:
    """A ``POST /images/upload`` body; what is None is left out (the service's default)."""
    body: dict[str, Any] = {
        "content_type": content_type,
        "method": method,
        "tags": list(tags),
        "description": description,
        **more,
    }
    optional = {"size": size, "filename": filename, "checksum_sha256": checksum_sha256}
    body.update({name: value for name, value in optional.items() if value is not None})
    return body


def _sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def _api_error(response: aiohttp.ClientResponse, body: Any) -> ApiError:
    error = body.get("error") if isinstance(body, dict) else None
    retry_after = response.headers.get("Retry-After")
    if not isinstance(error, dict):
        error = {"code": f"http_{response.status}", "message": response.reason or ""}
    return ApiError(
        response.status,
        str(error.get("code")),
        str(error.get("message")),
        error.get("details") or {},
        request_id=response.headers.get("X-Request-ID"),
        retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
    )
