"""What a thousand held `?wait=ready` requests cost one `image-service serve` process.

A thousand pending images (upload URLs never used), then a thousand requests waiting on them at
once, each held for up to 20 s. Measured on the API process: its RSS before and while they are
held (and so the memory per held wait), the CPU it spends holding them, and the DynamoDB reads
it makes meanwhile (one BatchGetItem per hundred waits per second, from its /metrics).

    .venv/bin/python -m bench.waits [--waits 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from contextlib import AsyncExitStack

import aiohttp
import psutil

from bench.api import service_environment
from bench.stack import AWS, BIN, moto, process
from image_service.auth.tokens import issue_token
from image_service.programs.embedded import free_port
from image_service.settings import Settings
from image_service.storage.clients import provision

HOLD_SECONDS = 20
MEASURE_SECONDS = 5


def batch_gets(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith('image_service_dynamodb_requests_total{operation="BatchGetItem"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--waits", type=int, default=1000)
    args = parser.parse_args()
    port = free_port()
    async with AsyncExitStack() as stack:
        endpoint = await stack.enter_async_context(moto(keep_alive=True))
        os.environ.update(AWS, AWS_ENDPOINT_URL=endpoint)
        env = service_environment(f"waits-{uuid.uuid4().hex[:8]}", port)
        env["IMAGE_SERVICE_MAX_HELD_WAITS"] = str(args.waits)
        os.environ.update(env)
        await provision(Settings.from_env())
        base = f"http://127.0.0.1:{port}"
        server = await stack.enter_async_context(
            process([str(BIN / "image-service"), "serve"], env, f"{base}/health")
        )
        api = psutil.Process(server.pid)
        token = issue_token(env["IMAGE_SERVICE_JWT_SECRET"], "bench")
        headers = {"Authorization": f"Bearer {token}"}
        http = await stack.enter_async_context(
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=args.waits + 10),
                timeout=aiohttp.ClientTimeout(total=HOLD_SECONDS + 30),
            )
        )

        async def pending() -> str:
            body = {"content_type": "image/jpeg"}
            async with http.post(f"{base}/images/upload", json=body, headers=headers) as r:
                return str((await r.json())["image_id"])

        image_ids = []
        for start in range(0, args.waits, 100):
            count = min(100, args.waits - start)
            image_ids += await asyncio.gather(*(pending() for _ in range(count)))

        async def held(image_id: str) -> int:
            params = {"wait": "ready", "timeout": str(HOLD_SECONDS)}
            async with http.get(f"{base}/images/{image_id}", params=params, headers=headers) as r:
                await r.read()
                return r.status

        async def metrics() -> str:
            async with http.get(f"{base}/metrics") as response:
                return await response.text()

        await asyncio.sleep(1)
        idle_rss = api.memory_info().rss
        waits = [asyncio.create_task(held(image_id)) for image_id in image_ids]
        await asyncio.sleep(3)  # all connected and held
        cpu_before, reads_before = api.cpu_times(), batch_gets(await metrics())
        started = time.perf_counter()
        await asyncio.sleep(MEASURE_SECONDS)
        elapsed = time.perf_counter() - started
        cpu_after, reads_after = api.cpu_times(), batch_gets(await metrics())
        held_rss = api.memory_info().rss
        statuses = await asyncio.gather(*waits)

    busy = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    print(f"{args.waits} requests held at once on one `serve` process (moto, loopback):")
    print(
        f"  RSS idle {idle_rss / 2**20:.1f} MiB -> held {held_rss / 2**20:.1f} MiB: "
        f"{(held_rss - idle_rss) / args.waits / 1024:.1f} KiB per held wait "
        "(its connection, request, and future)"
    )
    print(f"  CPU while holding: {busy / elapsed * 100:.1f} % of one core")
    print(
        f"  DynamoDB while holding: {(reads_after - reads_before) / elapsed:.1f} BatchGetItem/s "
        "(a hundred keys each, a round a second plus the reads' own time)"
    )
    print(f"  answers: {sorted(set(statuses))} (each the pending image, after {HOLD_SECONDS} s)")


if __name__ == "__main__":
    asyncio.run(main())
