"""Where one endpoint's CPU goes: py-spy on `image-service serve` under load, per request.

Starts moto's server and this service (one process, production settings but the per-user
limit), seeds a page of ready images per user (bench/api.py's seed), then drives one endpoint at
one concurrency while py-spy samples the server process's CPU (on-CPU samples only). Each sample
is charged to one part of a request (the marked frame nearest its leaf, see PARTS):

    presign, auth, marshmallow load, botocore parse, serialize, sign and plumbing (events,
    endpoint rules, retries), our DynamoDB client, the HTTP client to AWS, backend connection
    setup, JSON encoding, domain, storage (ours), middlewares, handlers, aiohttp's server (HTTP
    parsing, routing, responses), and the event loop (the rest: uvloop's native loop and
    socket calls)

and printed as CPU µs per request: the share of samples times the process's CPU per request
measured over the same phase (psutil). `--collapsed FILE` keeps the raw stacks (flamegraph.pl
and speedscope read them).

moto keeps connections alive unless `--moto-closes-connections` (as in bench/api.py).

    .venv/bin/python -m bench.profile ["POST /images/upload"] [--concurrency 16] [--requests 6000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import uuid
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path

from bench.api import drive, seed, service_environment, service_requests
from bench.stack import AWS, BIN, moto, process
from image_service.programs.embedded import free_port
from image_service.settings import Settings
from image_service.storage.clients import provision

# (part, markers): a sample is charged to the part of the frame nearest its leaf that carries
# one of these markers (py-spy's frame text: "function (path/to/file.py:line)"), so a handler or
# middleware is charged only its own time, and a library's time to the code that called it only
# when the library is not listed (hmac under the presigner is the presigner's). Frames shared by
# the server and the client (aiohttp's writer and parser) carry no marker: their caller decides.
PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("presign", ("image_service/storage/presign.py",)),
    ("auth", ("image_service/auth/",)),
    ("marshmallow load", ("marshmallow/",)),
    ("botocore parse", ("botocore/parsers.py", "read_dynamodb_answers_as_json")),
    ("botocore serialize", ("botocore/serialize.py", "botocore/validate.py")),
    ("botocore sign", ("botocore/auth.py", "botocore/signers.py", "aiobotocore/signers.py")),
    (
        "botocore plumbing (events, endpoint rules, retries, user agent)",
        ("botocore/", "aiobotocore/client.py", "aiobotocore/hooks.py", "aiobotocore/regions.py"),
    ),
    ("DynamoDB client (ours: sign, encode, decode)", ("image_service/storage/dynamo/wire.py",)),
    (
        "HTTP client to AWS (aiohttp, aiobotocore)",
        (
            "aiobotocore/endpoint.py",
            "aiobotocore/httpsession.py",
            "aiobotocore/_endpoint_helpers.py",
            "aiobotocore/response.py",
            "aiohttp/client",
            "aiohttp/streams.py",
        ),
    ),
    # moto's server answers every call with `Connection: close` (werkzeug), so each call opens a
    # connection; AWS keeps them alive.
    ("backend connection setup", ("aiohttp/connector.py", "aiohappyeyeballs/")),
    ("JSON encoding", ("orjson", "image_service/web/views.py", "image_service/web/encoding.py")),
    ("domain", ("image_service/domain/",)),
    ("storage (ours)", ("image_service/storage/",)),
    ("middlewares", ("image_service/web/middlewares.py",)),
    ("handlers and schemas", ("image_service/web/handlers", "image_service/web/schemas")),
    (
        "aiohttp server (HTTP parsing, routing, responses)",
        (
            "aiohttp/web_protocol",
            "aiohttp/web_request",
            "aiohttp/web_response",
            "aiohttp/web_app",
            "aiohttp/web_urldispatcher",
            "aiohttp/web_middlewares",
            "aiohttp/base_protocol",
            "aiohttp/tcp_helpers",
            "multidict",
            "yarl/",
        ),
    ),
]
# Samples with no marked frame: uvloop's native loop and socket calls under `run_app`, asyncio's
# task steps.
EVENT_LOOP = "event loop (uvloop, asyncio, sockets)"


def part_of(frame: str) -> str | None:
    return next((name for name, markers in PARTS if any(m in frame for m in markers)), None)


def charge(stacks: Counter[str]) -> Counter[str]:
    """Samples per part, from py-spy's collapsed stacks ("frame;frame;... count" lines)."""
    parts: Counter[str] = Counter()
    for stack, samples in stacks.items():
        frames = reversed(stack.split(";"))
        part = next(filter(None, map(part_of, frames)), EVENT_LOOP)
        parts[part] += samples
    return parts


def read_collapsed(path: Path) -> Counter[str]:
    stacks: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            stacks[stack] += int(count)
    return stacks


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("endpoint", nargs="?", default="POST /images/upload")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--collapsed", type=Path, help="keep py-spy's collapsed stacks here")
    parser.add_argument(
        "--moto-closes-connections",
        action="store_true",
        help="as in bench/api.py: moto's own server, a connection per call",
    )
    args = parser.parse_args()

    suffix = uuid.uuid4().hex[:8]
    port = free_port()
    async with AsyncExitStack() as stack:
        endpoint = await stack.enter_async_context(
            moto(keep_alive=not args.moto_closes_connections)
        )
        os.environ.update(AWS, AWS_ENDPOINT_URL=endpoint)
        service_env = service_environment(f"profile-{suffix}", port)
        os.environ.update(service_env)
        settings = Settings.from_env()
        await provision(settings)
        image_ids = await seed(settings, baseline_table=None)
        base = f"http://127.0.0.1:{port}"
        service = await stack.enter_async_context(
            process([str(BIN / "image-service"), "serve"], service_env, f"{base}/health")
        )
        request = service_requests(image_ids)[args.endpoint]
        await drive(base, service.pid, request, 200, args.concurrency)  # warm up

        with tempfile.TemporaryDirectory() as scratch:
            collapsed = args.collapsed or Path(scratch) / "stacks.txt"
            spy = await asyncio.create_subprocess_exec(
                *(str(BIN / "py-spy"), "record", "--pid", str(service.pid), "--format", "raw"),
                *("--rate", str(args.rate), "--nonblocking", "--output", str(collapsed)),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            await asyncio.sleep(1)  # py-spy attaches
            phase = await drive(base, service.pid, request, args.requests, args.concurrency)
            spy.send_signal(signal.SIGINT)
            await spy.wait()
            parts = charge(read_collapsed(collapsed))

    samples = sum(parts.values())
    print(
        f"{args.endpoint} at {args.concurrency} connections: {phase.requests} requests, "
        f"{phase.rps:.0f} req/s, {phase.cpu_us:.0f} CPU µs per request, {samples} samples "
        f"({sum(phase.errors.values())} errors)\n"
    )
    for part, count in parts.most_common():
        share = count / samples
        print(f"  {part:<64} {share:>6.1%} {share * phase.cpu_us:>7.0f} µs")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
