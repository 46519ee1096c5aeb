"""`ImageServiceClient`: the async Python client of the whole API, typed.

It follows the service's own protocol, so callers never handle presigned URLs by hand: ask for an
upload URL, send the bytes straight to S3 (a signed PUT or a POST policy, with progress), complete,
wait until processed, list page by page, download, delete. The CLI's ``upload``/``list``/
``download``/``delete`` commands, the load-test tool and the tests all speak through it. What the
calls answer is in ``types.py``; how the bytes travel to S3, in ``transfer.py``.

    async with ImageServiceClient("http://127.0.0.1:8080", token) as images:
        image = await images.upload(data, tags=["holiday"], wait=True)
        async for image in images.iter_images(tag="holiday"):
            ...

Errors are typed: :class:`ApiError` carries the service's JSON envelope (status, code, message,
details, request id, ``Retry-After``); :class:`StorageError` is S3 refusing the bytes.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import replace
from datetime import date, datetime
from types import TracebackType
from typing import Any, Literal, Self, TypedDict, Unpack

import aiohttp

from image_service.client import transfer
from image_service.client.bulk import BulkCalls
from image_service.client.parts import (
    ByteSource,
    BytesSource,
    MultipartTicket,
    PartTicket,
    digests,
)
from image_service.client.sharing import SharingCalls
from image_service.client.transfer import DEFAULT_PARTS_AT_ONCE
from image_service.client.types import (
    ApiError,
    Image,
    Page,
    ProcessingTimeout,
    Progress,
    StorageError,
    UploadTicket,
)
from image_service.imaging.formats import content_type_from_magic

DEFAULT_TIMEOUT_SECONDS = 60.0
# The longest the service holds one `?wait=ready` request.
MAX_WAIT_SECONDS = 20
# Above this, `upload` sends the bytes in parts (below the service's 20 MiB single-PUT limit).
MULTIPART_THRESHOLD_BYTES = 16 * 1024 * 1024
DEFAULT_PART_BYTES = 8 * 1024 * 1024


class ImageDetails(TypedDict, total=False):
    """What every upload call may say about the image (the service's defaults otherwise)."""

    tags: Iterable[str]
    description: str
    filename: str | None


class Waiting(TypedDict, total=False):
    """Whether an upload call waits until the image is processed, and for how long at most
    (``DEFAULT_TIMEOUT_SECONDS``)."""

    wait: bool
    max_wait: float


class UploadOptions(ImageDetails, Waiting, total=False):
    """The options the whole-upload calls share."""


def _details(options: UploadOptions) -> ImageDetails:
    details: ImageDetails = {}
    if "tags" in options:
        details["tags"] = options["tags"]
    if "description" in options:
        details["description"] = options["description"]
    if "filename" in options:
        details["filename"] = options["filename"]
    return details


class ImageServiceClient(SharingCalls, BulkCalls):
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
        checksum_sha256: str | None = None,
        method: str = "PUT",
        idempotency_key: str | None = None,
        **details: Unpack[ImageDetails],
    ) -> UploadTicket:
        """``POST /images/upload``. Declaring ``size`` (and ``checksum_sha256``, base64) gets
        them signed into a PUT URL, so S3 itself refuses other bytes or a second upload."""
        body = _upload_body(
            content_type, method, details, size=size, checksum_sha256=checksum_sha256
        )
        return UploadTicket.from_json(await self._post_upload(body, idempotency_key))

    async def _post_upload(self, body: dict[str, Any], idempotency_key: str | None) -> Any:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return await self._json("POST", "/images/upload", json=body, headers=headers)

    async def send(
        self, ticket: UploadTicket, data: bytes, *, progress: Progress | None = None
    ) -> None:
        """Sends the bytes straight to S3 as the ticket says (``transfer.send``)."""
        await transfer.send(self._session, ticket, data, progress=progress)

    async def create_multipart_upload(
        self,
        content_type: str,
        size: int,
        *,
        part_size: int = DEFAULT_PART_BYTES,
        part_checksums: Iterable[str] = (),
        checksum_sha256: str | None = None,
        if_exists: str = "create",
        idempotency_key: str | None = None,
        **details: Unpack[ImageDetails],
    ) -> MultipartTicket | Image:
        """``POST /images/upload`` for a multipart upload: a URL per part, each signing its
        length (and its SHA-256 when ``part_checksums`` are given). With ``if_exists="return"``
        and ``checksum_sha256``, the caller's image of the same bytes if there is one."""
        body = _upload_body(
            content_type,
            "MULTIPART",
            details,
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
        """PUTs the ticket's parts, ``parts_at_once`` at a time (``transfer.send_parts``); a
        part whose URL expired meanwhile is signed again by the service."""

        async def fresh_part(part: PartTicket) -> PartTicket:
            fresh = await self.parts(ticket.image_id)
            return next(p for p in fresh.parts if p.part_number == part.part_number)

        await transfer.send_parts(
            self._session,
            ticket,
            source,
            fresh_part=fresh_part,
            parts_at_once=parts_at_once,
            progress=progress,
        )

    async def upload_multipart(
        self,
        source: ByteSource,
        content_type: str,
        *,
        part_size: int = DEFAULT_PART_BYTES,
        parts_at_once: int = DEFAULT_PARTS_AT_ONCE,
        skip_existing: bool = False,
        progress: Progress | None = None,
        started: Callable[[MultipartTicket], None] | None = None,
        **options: Unpack[UploadOptions],
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
            if_exists="return" if skip_existing else "create",
            **_details(options),
        )
        if isinstance(answer, Image):
            return replace(answer, existing=True)
        if started is not None:
            started(answer)
        await self.send_parts(answer, source, parts_at_once=parts_at_once, progress=progress)
        return await self._completed(answer.image_id, options)

    async def resume_upload(
        self,
        image_id: str,
        source: ByteSource,
        *,
        parts_at_once: int = DEFAULT_PARTS_AT_ONCE,
        progress: Progress | None = None,
        **waiting: Unpack[Waiting],
    ) -> Image:
        """Finishes an interrupted multipart upload: sends only the parts S3 does not hold."""
        ticket = await self.parts(image_id)
        await self.send_parts(ticket, source, parts_at_once=parts_at_once, progress=progress)
        return await self._completed(image_id, waiting)

    async def _completed(self, image_id: str, waiting: Waiting) -> Image:
        image = await self.complete(image_id)
        if waiting.get("wait", False):
            max_wait = waiting.get("max_wait", DEFAULT_TIMEOUT_SECONDS)
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
        method: str = "PUT",
        progress: Progress | None = None,
        skip_existing: bool = False,
        multipart_threshold: int = MULTIPART_THRESHOLD_BYTES,
        part_size: int = DEFAULT_PART_BYTES,
        parts_at_once: int = DEFAULT_PARTS_AT_ONCE,
        **options: Unpack[UploadOptions],
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
                part_size=part_size,
                parts_at_once=parts_at_once,
                skip_existing=skip_existing,
                progress=progress,
                **options,
            )
        body = _upload_body(
            declared,
            method,
            _details(options),
            size=len(data) if method == "PUT" else None,
            checksum_sha256=_sha256(data) if skip_existing or method == "PUT" else None,
            if_exists="return" if skip_existing else "create",
        )
        answer = await self._post_upload(body, None)
        if "upload_url" not in answer:  # skip_existing: already there
            return replace(Image.from_json(answer), existing=True)
        ticket = UploadTicket.from_json(answer)
        await self.send(ticket, data, progress=progress)
        return await self._completed(ticket.image_id, options)

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
        self,
        image_id: str,
        *,
        tags: Iterable[str] | None = None,
        description: str | None = None,
        focal: tuple[float, float] | Literal["keep"] | None = "keep",
    ) -> Image:
        """Changes what is given: ``focal`` (x, y) from 0 to 1, or None to clear it."""
        body: dict[str, Any] = {}
        if tags is not None:
            body["tags"] = list(tags)
        if description is not None:
            body["description"] = description
        if focal != "keep":
            body["focal"] = None if focal is None else {"x": focal[0], "y": focal[1]}
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
        gravity: str | None = None,
    ) -> str:
        """The signed delivery URL of a rendition (no token needed to fetch it until it
        expires): ``width``/``height`` from the service's allowlist, or a named ``preset``;
        ``gravity`` (center, focal, auto) says what a cover crop keeps."""
        params: dict[str, str] = {"fit": fit, "format": format}
        named = (("w", width), ("h", height), ("q", quality), ("preset", preset))
        for name, value in (*named, ("gravity", gravity)):
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
    details: ImageDetails,
    *,
    size: int | None,
    checksum_sha256: str | None,
    **more: Any,
) -> dict[str, Any]:
    """A ``POST /images/upload`` body; what is None is left out (the service's default)."""
    body: dict[str, Any] = {
        "content_type": content_type,
        "method": method,
        "tags": list(details.get("tags", ())),
        "description": details.get("description", ""),
        **more,
    }
    optional = {
        "size": size,
        "filename": details.get("filename"),
        "checksum_sha256": checksum_sha256,
    }
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
