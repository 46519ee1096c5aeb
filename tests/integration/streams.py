"""Reading a server-sent event stream as a client does: (event type, data) as they come."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp


async def sse_events(
    http: aiohttp.ClientSession, url: str, **request: Any
) -> AsyncIterator[tuple[str, Any]]:
    """Each event of the stream at ``url`` (``request``: headers, params) with its JSON data."""
    async with http.get(url, timeout=aiohttp.ClientTimeout(), **request) as response:
        assert response.status == 200, await response.text()
        assert response.content_type == "text/event-stream"
        event = None
        async for raw in response.content:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("event:"):
                event = line.removeprefix("event:").strip()
            elif line.startswith("data:") and event is not None:
                yield event, json.loads(line.removeprefix("data:").strip())
                event = None
