"""Scanners an image must pass before it is served: ClamAV (clamd) and a moderation webhook.

Both fail closed: a scanner that cannot answer raises ScannerUnavailable, the job is retried
later, and the image stays ``processing`` — never ``ready`` without every verdict.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from typing import IO, Protocol

import aiohttp

CLAMD_TIMEOUT_SECONDS = 30
WEBHOOK_TIMEOUT_SECONDS = 10
# clamd's INSTREAM frames; its StreamMaxLength (default 100 MB) must cover the largest upload.
_CLAMD_CHUNK = 256 * 1024


class ScannerUnavailable(Exception):
    def __init__(self, scanner: str, reason: str) -> None:
        super().__init__(f"{scanner} unavailable: {reason}")
        self.scanner = scanner
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ScanSubject:
    user_id: str
    image_id: str
    content_type: str
    file: IO[bytes]  # the original's bytes (spooled: read from the start, a chunk at a time)
    download_url: str  # short-lived presigned GET of the original


@dataclass(frozen=True, slots=True)
class Verdict:
    clean: bool
    scanner: str
    finding: str | None = None  # the signature or the reason of a denial


class Scanner(Protocol):
    name: str

    async def scan(self, subject: ScanSubject) -> Verdict: ...


class ClamdScanner:
    """clamd's INSTREAM command over its socket: the bytes go in, a verdict comes back."""

    name = "clamav"

    def __init__(self, address: str) -> None:
        self._address = address

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        kind, _, target = self._address.partition(":")
        if kind == "unix":
            return await asyncio.open_unix_connection(target)
        host, _, port = target.rpartition(":")
        return await asyncio.open_connection(host, int(port))

    async def scan(self, subject: ScanSubject) -> Verdict:
        try:
            async with asyncio.timeout(CLAMD_TIMEOUT_SECONDS):
                reader, writer = await self._connect()
                try:
                    writer.write(b"zINSTREAM\0")
                    subject.file.seek(0)
                    while chunk := await asyncio.to_thread(subject.file.read, _CLAMD_CHUNK):
                        writer.write(struct.pack(">I", len(chunk)) + chunk)
                        await writer.drain()
                    writer.write(struct.pack(">I", 0))
                    await writer.drain()
                    reply = (await reader.readuntil(b"\0")).rstrip(b"\0").decode()
                finally:
                    writer.close()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            raise ScannerUnavailable(self.name, type(exc).__name__) from exc
        # "stream: OK" | "stream: <signature> FOUND" | "<reason> ERROR"
        if reply.endswith(" FOUND"):
            return Verdict(False, self.name, reply.removeprefix("stream: ").removesuffix(" FOUND"))
        if reply.endswith(": OK"):
            return Verdict(True, self.name)
        raise ScannerUnavailable(self.name, reply)


class WebhookScanner:
    """POSTs the image's facts and a presigned URL; expects ``{"decision": "allow" | "deny"}``."""

    name = "moderation"

    def __init__(self, url: str, http: aiohttp.ClientSession) -> None:
        self._url = url
        self._http = http

    async def scan(self, subject: ScanSubject) -> Verdict:
        payload = {
            "image_id": subject.image_id,
            "user_id": subject.user_id,
            "content_type": subject.content_type,
            "url": subject.download_url,
        }
        try:
            async with self._http.post(
                self._url,
                json=payload,
                timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT_SECONDS),
            ) as response:
                response.raise_for_status()
                answer = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ScannerUnavailable(self.name, type(exc).__name__) from exc
        decision = answer.get("decision") if isinstance(answer, dict) else None
        if decision == "allow":
            return Verdict(True, self.name)
        if decision == "deny":
            reason = answer.get("reason")
            return Verdict(False, self.name, str(reason) if reason else "denied")
        raise ScannerUnavailable(self.name, f"unexpected answer {decision!r}")
