"""What a multipart upload needs on the client's side: the bytes as a source read part by part
(a file is never read whole), the part and file digests, and the tickets the API answers.

The service's protocol (``docs/uploads.md``): ``POST /images/upload`` with ``"method":
"MULTIPART"`` answers a URL per part; each part is PUT to its URL (several at once); a client
that lost its place asks ``GET /images/{id}/parts`` for what S3 holds and fresh URLs for the
rest; ``POST /images/{id}/complete`` assembles and verifies.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

# Parts are read and hashed this much at a time: a part is never more than this in memory
# while its digest is computed.
_HASH_CHUNK_BYTES = 1024 * 1024


class ByteSource(Protocol):
    """The bytes of one upload, read at any offset."""

    @property
    def size(self) -> int: ...

    async def read(self, offset: int, length: int) -> bytes: ...


class BytesSource:
    """Bytes already in memory."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    @property
    def size(self) -> int:
        return len(self._data)

    async def read(self, offset: int, length: int) -> bytes:
        return self._data[offset : offset + length]


class FileSource:
    """A file read part by part, off the event loop; it must not change during the upload."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._size = path.stat().st_size

    @property
    def size(self) -> int:
        return self._size

    async def read(self, offset: int, length: int) -> bytes:
        return await asyncio.to_thread(self._pread, offset, length)

    def _pread(self, offset: int, length: int) -> bytes:
        with self.path.open("rb") as file:
            return os.pread(file.fileno(), length, offset)


@dataclass(frozen=True, slots=True)
class Digests:
    """Base64 SHA-256 of the whole source and of each of its parts."""

    whole: str
    parts: tuple[str, ...]


def _b64(digest: Any) -> str:
    return base64.b64encode(digest.digest()).decode("ascii")


async def digests(source: ByteSource, part_size: int) -> Digests:
    """One pass over the source, a megabyte at a time: its digest and each part's."""
    whole = hashlib.sha256()
    parts: list[str] = []
    for start in range(0, source.size, part_size):
        part = hashlib.sha256()
        end = min(start + part_size, source.size)
        for offset in range(start, end, _HASH_CHUNK_BYTES):
            chunk = await source.read(offset, min(_HASH_CHUNK_BYTES, end - offset))
            await asyncio.to_thread(_update, (whole, part), chunk)
        parts.append(_b64(part))
    return Digests(whole=_b64(whole), parts=tuple(parts))


def _update(hashes: tuple[Any, ...], chunk: bytes) -> None:
    for digest in hashes:
        digest.update(chunk)


@dataclass(frozen=True, slots=True)
class PartTicket:
    """Where to PUT one part, with exactly these headers, until the URL expires."""

    part_number: int
    size: int
    url: str
    headers: dict[str, str]

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> PartTicket:
        return cls(
            part_number=body["part_number"],
            size=body["size"],
            url=body["url"],
            headers=dict(body.get("headers") or {}),
        )


@dataclass(frozen=True, slots=True)
class MultipartTicket:
    """A multipart upload: its image, S3 upload id, part size, and the parts still to send."""

    image_id: str
    upload_id: str
    part_size: int
    parts: tuple[PartTicket, ...]
    expires_at: datetime
    uploaded_bytes: int = 0  # what S3 already holds (a resumed upload)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> MultipartTicket:
        return cls(
            image_id=body["image_id"],
            upload_id=body["upload_id"],
            part_size=body["part_size"],
            parts=tuple(PartTicket.from_json(part) for part in body["parts"]),
            expires_at=datetime.fromisoformat(body["expires_at"]),
            uploaded_bytes=sum(part["size"] for part in body.get("uploaded") or ()),
        )
