"""Sending the bytes straight to S3, as a ticket says: one PUT or form POST, or a multipart
upload's parts a few at a time, each retried on the network or with a fresh URL, with progress.
Nothing here speaks to the service itself: a part whose URL expired asks ``fresh_part``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload

from image_service.client.parts import ByteSource, MultipartTicket, PartTicket
from image_service.client.types import Progress, StorageError, UploadTicket

# Bytes written to S3 between two progress reports.
PROGRESS_CHUNK_BYTES = 64 * 1024
DEFAULT_PARTS_AT_ONCE = 4
# A part whose send failed on the network (or whose URL expired) is tried this many times.
_PART_ATTEMPTS = 3

# The part's URL signed again (it expired): the service's answer for that part.
FreshPart = Callable[[PartTicket], Awaitable[PartTicket]]


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


async def send(
    session: aiohttp.ClientSession,
    ticket: UploadTicket,
    data: bytes,
    *,
    progress: Progress | None = None,
) -> None:
    """Sends the bytes as the ticket says: a PUT with exactly its headers, or a form POST with
    its fields and the file last (S3 ignores fields after the file)."""
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
        request = session.post(ticket.upload_url, data=form)
    else:
        # aiohttp writes the real Content-Length itself; a signed one must equal it anyway.
        headers = {k: v for k, v in ticket.headers.items() if k.lower() != "content-length"}
        request = session.put(ticket.upload_url, data=payload, headers=headers)
    async with request as response:
        if response.status not in (200, 201, 204):
            raise StorageError(response.status, await response.text())


async def send_parts(
    session: aiohttp.ClientSession,
    ticket: MultipartTicket,
    source: ByteSource,
    *,
    fresh_part: FreshPart,
    parts_at_once: int = DEFAULT_PARTS_AT_ONCE,
    progress: Progress | None = None,
) -> None:
    """PUTs the ticket's parts, ``parts_at_once`` at a time, each read from ``source`` when its
    turn comes. A part that fails on the network, or whose URL expired meanwhile, is sent
    again (with a fresh URL)."""
    slots = asyncio.Semaphore(parts_at_once)
    sent = {0: ticket.uploaded_bytes}

    def reporter(number: int) -> Progress:
        def report(done: int, _total: int) -> None:
            sent[number] = done
            if progress is not None:
                progress(sum(sent.values()), source.size)

        return report

    async def send_one(part: PartTicket) -> None:
        async with slots:
            data = await source.read((part.part_number - 1) * ticket.part_size, part.size)
            for attempt in range(_PART_ATTEMPTS):
                try:
                    await _put_part(session, part, data, reporter(part.part_number))
                    return
                except (StorageError, aiohttp.ClientConnectionError) as exc:
                    expired = isinstance(exc, StorageError) and exc.status == 403
                    if attempt + 1 == _PART_ATTEMPTS or (
                        isinstance(exc, StorageError) and not expired and exc.status < 500
                    ):
                        raise
                    if expired:  # signed too long ago: ask for this part's URL again
                        part = await fresh_part(part)

    await asyncio.gather(*(send_one(part) for part in ticket.parts))


async def _put_part(
    session: aiohttp.ClientSession, part: PartTicket, data: bytes, progress: Progress
) -> None:
    headers = {k: v for k, v in part.headers.items() if k.lower() != "content-length"}
    payload = _ProgressPayload(data, progress, content_type="application/octet-stream")
    async with session.put(part.url, data=payload, headers=headers) as response:
        if response.status != 200:
            raise StorageError(response.status, await response.text())
