"""A fault-injecting reverse proxy on loopback, in front of a real emulator.

Point a process's ``AWS_ENDPOINT_URL`` at :attr:`FaultProxy.url` and every AWS call it makes
crosses this proxy, which forwards it to the emulator unchanged unless a rule matches: then the
call is delayed, answered with an error status, or its connection dropped. Faults are injected
on the wire, between the service and its backend, never by patching the service's own code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from image_service.client import ImageServiceClient
from image_service.programs.embedded import free_port
from tests.processes import Program

# Hop-by-hop and length headers: aiohttp writes its own for the forwarded message.
_NOT_FORWARDED = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "expect"}
)


@dataclass(frozen=True, slots=True)
class Call:
    """One request that reached the proxy."""

    method: str
    path: str
    query: str
    target: str  # X-Amz-Target (DynamoDB and SQS JSON operations), or ""
    user_agent: str = ""

    @property
    def operation(self) -> str:
        """``DynamoDB_20120810.Query`` -> ``Query``; S3 calls have none."""
        return self.target.rpartition(".")[2]


Match = Callable[[Call], bool]


def operation(name: str) -> Match:
    """DynamoDB or SQS calls of one operation, e.g. ``operation("Query")``."""
    return lambda call: call.operation == name


def s3(method: str, key_part: str = "") -> Match:
    """S3 object calls of one HTTP method whose path contains ``key_part``."""
    return lambda call: not call.target and call.method == method and key_part in call.path


@dataclass
class Rule:
    match: Match
    action: str  # "delay", "hold", "fail", "drop" or "lose" (the answer, after the backend acted)
    seconds: float = 0.0
    status: int = 500
    times: int | None = None  # None: every matching call
    hits: int = 0
    seen: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    _waiting: list[tuple[int, asyncio.Event]] = field(default_factory=list)

    def release(self) -> None:
        """Lets every call a ``hold`` rule holds, and every later one, go on."""
        self.released.set()

    async def wait_for_hits(self, count: int) -> None:
        """Returns once ``count`` calls have matched the rule."""
        reached = asyncio.Event()
        self._waiting.append((count, reached))
        self.note_hits(0)
        await reached.wait()

    def note_hits(self, hits: int) -> None:
        self.hits += hits
        if hits:
            self.seen.set()
        for count, reached in self._waiting:
            if self.hits >= count:
                reached.set()

    def applies(self, call: Call) -> bool:
        return (self.times is None or self.hits < self.times) and self.match(call)


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.rules: list[Rule] = []
        self.calls: list[Call] = []
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None

    def delay(self, match: Match, seconds: float, *, times: int | None = None) -> Rule:
        return self._add(Rule(match, "delay", seconds=seconds, times=times))

    def hold(self, match: Match) -> Rule:
        """Matching calls wait, however long, until the rule's ``release()``: for tests that
        must know a call is still in flight, where a delay would only make it likely."""
        return self._add(Rule(match, "hold"))

    def fail(self, match: Match, *, status: int = 500, times: int | None = 1) -> Rule:
        return self._add(Rule(match, "fail", status=status, times=times))

    def drop(self, match: Match, *, times: int | None = 1) -> Rule:
        return self._add(Rule(match, "drop", times=times))

    def lose_answer(self, match: Match, *, times: int | None = 1) -> Rule:
        """The call reaches the backend, which acts on it; its answer never comes back (the
        connection is reset instead): a committed write whose client cannot know it."""
        return self._add(Rule(match, "lose", times=times))

    def clear(self) -> None:
        self.rules.clear()

    def _add(self, rule: Rule) -> Rule:
        self.rules.append(rule)
        return rule

    async def start(self) -> FaultProxy:
        # No pooling limit: the proxy must never be the bottleneck it is used to simulate.
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), auto_decompress=False
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        # A held request must not hold up the end of a test: its handler goes when its client
        # does, and stopping waits for nobody.
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=0.1
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._http is not None
        call = Call(
            request.method,
            request.path,
            request.query_string,
            request.headers.get("X-Amz-Target", ""),
            request.headers.get("User-Agent", ""),
        )
        self.calls.append(call)
        body = await request.read()
        lose = False
        for rule in self.rules:
            if not rule.applies(call):
                continue
            rule.note_hits(1)
            if rule.action == "delay":
                await asyncio.sleep(rule.seconds)
            elif rule.action == "hold":
                await rule.released.wait()
            elif rule.action == "fail":
                return web.Response(status=rule.status, text="injected fault")
            elif rule.action == "drop":
                assert request.transport is not None
                request.transport.close()
                raise ConnectionResetError("injected drop")
            elif rule.action == "lose":
                lose = True
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        async with self._http.request(
            request.method,
            self.upstream + request.rel_url.raw_path_qs,
            headers=headers,
            data=body,
            allow_redirects=False,
        ) as upstream:
            payload = await upstream.read()
            if lose:
                assert request.transport is not None
                request.transport.close()
                raise ConnectionResetError("injected loss of the answer")
            answer = {k: v for k, v in upstream.headers.items() if k.lower() not in _NOT_FORWARDED}
            if request.method == "HEAD":
                # No body, but the length of the one a GET would have: S3 clients read it, and
                # a plain Response would replace it with 0.
                head = web.StreamResponse(status=upstream.status, headers=answer)
                head.content_length = int(upstream.headers.get("Content-Length", "0"))
                await head.prepare(request)
                await head.write_eof()
                return head
            return web.Response(status=upstream.status, body=payload, headers=answer)


async def worker_in_mid_job(
    client: ImageServiceClient,
    proxy: FaultProxy,
    environment: dict[str, str],
    data: bytes,
    *,
    held_for: float,
) -> tuple[Program, str]:
    """A `worker` process (its AWS calls through ``proxy``) in the middle of one new image's
    job: its read of the upload is held ``held_for`` seconds. Returns it and the image id."""
    worker = await Program.start("worker", env=environment | {"AWS_ENDPOINT_URL": proxy.url})
    ticket = await client.create_upload("image/jpeg")
    held = proxy.delay(s3("GET", ticket.image_id), held_for, times=1)
    await client.send(ticket, data)
    await client.complete(ticket.image_id)
    await asyncio.wait_for(held.seen.wait(), timeout=20)
    return worker, ticket.image_id
