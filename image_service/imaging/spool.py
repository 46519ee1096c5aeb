"""An object's bytes held for inspection or processing in bounded memory: the first few MiB in
memory, the rest in a temporary file, hashed on the way in.

Completion (the API) and processing (the worker) both read whole objects, up to the multipart
limit (1 GiB by default). What a process holds is then this module's few MiB plus what the
decoder needs, which the pixel limits bound before any pixel is decoded.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from collections.abc import AsyncIterable
from types import TracebackType
from typing import IO, Self

IN_MEMORY_BYTES = 8 * 1024 * 1024


class Spooled:
    """Bytes in a spooled temporary file (closed with the ``with`` block), their size and
    hex SHA-256."""

    def __init__(self) -> None:
        # Closed by close() or the with block: this object is the context manager.
        self.file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=IN_MEMORY_BYTES)  # noqa: SIM115
        self.size = 0
        self._digest = hashlib.sha256()

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    @property
    def sha256_digest(self) -> bytes:
        return self._digest.digest()

    def write(self, chunk: bytes) -> None:
        """Appends ``chunk`` (blocking once past the memory part: call it off the loop)."""
        self._digest.update(chunk)
        self.file.write(chunk)
        self.size += len(chunk)

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


async def spool(chunks: AsyncIterable[bytes]) -> Spooled:
    """Everything ``chunks`` yields, spooled; writes that reach the disk go off the event loop."""
    loop = asyncio.get_running_loop()
    spooled = Spooled()
    try:
        async for chunk in chunks:
            if spooled.size + len(chunk) > IN_MEMORY_BYTES:
                await loop.run_in_executor(None, spooled.write, chunk)
            else:
                spooled.write(chunk)
    except BaseException:
        spooled.close()
        raise
    spooled.file.seek(0)
    return spooled
