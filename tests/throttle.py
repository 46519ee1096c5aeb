"""A slow network between a client and S3: a TCP proxy on loopback that forwards what clients
send at a fixed rate (answers go back at full speed), and counts it. A multipart upload through
it takes long enough to be interrupted halfway, as on a real uplink."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

_CHUNK_BYTES = 64 * 1024


class ThrottledProxy:
    def __init__(self, upstream: str, *, bytes_per_second: int) -> None:
        parts = urlsplit(upstream)
        assert parts.hostname is not None
        assert parts.port is not None
        self._upstream = (parts.hostname, parts.port)
        self._rate = bytes_per_second
        self.forwarded = 0  # bytes clients sent upstream
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)

        async def pipe(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, slow: bool
        ) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await source.read(_CHUNK_BYTES):
                    if slow:
                        await asyncio.sleep(len(data) / self._rate)
                        self.forwarded += len(data)
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(
            pipe(reader, up_writer, slow=True), pipe(up_reader, writer, slow=False)
        )


@contextlib.asynccontextmanager
async def throttled(upstream: str, *, bytes_per_second: int) -> AsyncIterator[ThrottledProxy]:
    proxy = ThrottledProxy(upstream, bytes_per_second=bytes_per_second)
    proxy._server = await asyncio.start_server(proxy._handle, "127.0.0.1", 0)
    try:
        yield proxy
    finally:
        proxy._server.close()
