"""Scale out: two API processes on one port (`serve --workers 2`) and two queue workers on the
same backends, loaded by `image-service loadtest` through whole lifecycles; then an audit that
nothing was lost, duplicated or left behind."""

from __future__ import annotations

import asyncio
import json
import sys

import psutil

from bench.soak import audit
from image_service.embedded import free_port
from tests.conftest import MakeApi
from tests.processes import Program, wait_for_port

LIFECYCLES = 32


async def test_two_api_processes_and_two_workers_lose_nothing(
    make_api: MakeApi, moto_endpoint: str
) -> None:
    api = await make_api(embedded_worker=False)  # provisions; its app is the auditor's view
    port = free_port()
    env = api.child_environment(
        PORT=str(port),
        UPLOAD_RATE_PER_MINUTE="100000",
        UPLOAD_BURST="100000",
    )
    server = await Program.start("serve", "--workers", "2", env=env)
    workers = [await Program.start("worker", env=env) for _ in range(2)]
    try:
        await wait_for_port(port)
        api_processes = [
            child
            for child in psutil.Process(server.process.pid).children()
            if "resource_tracker" not in " ".join(child.cmdline())  # multiprocessing's helper
        ]
        assert len(api_processes) == 2
        cpu_before = [p.cpu_times().user for p in api_processes]

        load = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "image_service", "loadtest", "--json"),
            *("--url", f"http://127.0.0.1:{port}", "--users", "8"),
            *("--count", str(LIFECYCLES), "--keep-every", "2"),
            env=env,
            stdout=asyncio.subprocess.PIPE,
        )
        output, _ = await asyncio.wait_for(load.communicate(), timeout=240)
        report = json.loads(output)
        assert (report["lifecycles"], report["errors"]) == (LIFECYCLES, {})
        assert all(
            p.cpu_times().user > before + 0.2
            for p, before in zip(api_processes, cpu_before, strict=True)
        ), "the kernel spread the connections over both API processes"
    finally:
        for worker in workers:
            await worker.stop()
        await server.stop()
    published = [
        json.loads(line)["image_id"]
        for worker in workers
        for line in worker.lines
        if '"event":"image_ready"' in line
    ]
    kept, deleted = report["kept"], report["deleted"]
    assert (len(kept), len(deleted)) == (LIFECYCLES // 2, LIFECYCLES // 2)

    # The soak script's audit (bench/soak.py), here on a short run: listed exactly once, gone
    # from S3 and DynamoDB when deleted, ready exactly once.
    result = await audit(
        report,
        api_url=api.url,
        jwt_secret=api.settings.jwt_secret,
        s3_endpoint=moto_endpoint,
        dynamodb_endpoint=moto_endpoint,
        bucket=api.settings.bucket,
        table=api.settings.table,
        ready_events=published,
    )
    assert result.problems == []
    assert (result.kept_listed, result.deleted_checked) == (len(kept), len(deleted))
