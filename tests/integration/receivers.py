"""A webhook endpoint on loopback for the tests: records what arrives, answers as told, and
counts each ``webhook-id``; its secret is the one the tests' deployments sign with."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from image_service.programs.embedded import free_port

SECRET = "whsec_" + "c2VjcmV0LWtleS1mb3Itd2ViaG9va3MtdGVzdHM="  # base64 of 32 bytes of text
DELIVERY_SECONDS = 30


@dataclass
class Receiver:
    """A webhook endpoint: records what arrives, answers as told."""

    url: str
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)  # statuses to answer first, in order
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def events(self, path: str = "/hooks") -> list[dict[str, Any]]:
        return [json.loads(body) for p, _, body in self.requests if p == path]

    async def until(self, count: int, path: str = "/hooks") -> list[dict[str, Any]]:
        async with asyncio.timeout(DELIVERY_SECONDS):
            while len(self.events(path)) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.events(path)


@asynccontextmanager
async def webhook_receiver() -> AsyncIterator[Receiver]:
    """A receiver on a free loopback port, for as long as the block runs."""
    port = free_port()
    state = Receiver(url=f"http://127.0.0.1:{port}")

    async def hooks(request: web.Request) -> web.Response:
        state.requests.append((request.path, dict(request.headers), await request.read()))
        state.arrived.set()
        status = state.answers.pop(0) if state.answers else 200
        return web.Response(status=status)

    async def redirect(request: web.Request) -> web.Response:
        state.requests.append((request.path, dict(request.headers), await request.read()))
        state.arrived.set()
        raise web.HTTPTemporaryRedirect("/elsewhere")

    async def moderate(request: web.Request) -> web.Response:
        return web.json_response({"decision": "deny", "reason": "test"})

    app = web.Application()
    app.router.add_post("/hooks", hooks)
    app.router.add_post("/callback", hooks)
    app.router.add_post("/elsewhere", hooks)
    app.router.add_post("/redirect", redirect)
    app.router.add_post("/moderate", moderate)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield state
    await runner.cleanup()


def webhook_ids(receiver: Receiver, path: str = "/hooks") -> Counter[str]:
    """How many times each ``webhook-id`` arrived."""
    return Counter(headers["webhook-id"] for p, headers, _ in receiver.requests if p == path)
