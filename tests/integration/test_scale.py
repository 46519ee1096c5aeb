"""Scale out: two API processes on one port (`serve --workers 2`) and two queue workers on the
same backends, loaded by `image-service loadtest` through whole lifecycles; then an audit that
nothing was lost, duplicated or left behind."""

from __future__ import annotations

import asyncio
import json
import sys

import aiohttp
import psutil
import pytest

from bench.soak import audit
from image_service.programs.embedded import free_port
from tests.integration.conftest import MakeApi
from tests.processes import Program, wait_for_port

LIFECYCLES = 32
SPREAD_CONNECTIONS = 32  # all on one of two processes by chance: 2**-31


async def _connections_held_by_each(processes: list[psutil.Process], port: int) -> list[int]:
    """Open connections of our own, hold them, and count which API process accepted each.
    Observed on the sockets rather than inferred from CPU time, which a noisy machine blurs."""
    sessions = [aiohttp.ClientSession() for _ in range(SPREAD_CONNECTIONS)]
    try:
        for response in await asyncio.gather(
            *(session.get(f"http://127.0.0.1:{port}/health") for session in sessions)
        ):
            response.release()  # back to its session's pool: the connection stays open
        return [
            sum(
                1
                for connection in process.net_connections(kind="tcp")
                if connection.status == psutil.CONN_ESTABLISHED and connection.laddr.port == port
            )
            for process in processes
        ]
    finally:
        await asyncio.gather(*(session.close() for session in sessions))


@pytest.mark.long
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
        await wait_for_port(port, owner=server.process)
        api_processes = [
            child
            for child in psutil.Process(server.process.pid).children()
            if "resource_tracker" not in " ".join(child.cmdline())  # multiprocessing's helper
        ]
        assert len(api_processes) == 2

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
        held = await _connections_held_by_each(api_processes, port)
        assert all(held), f"the kernel spread connections over both API processes: {held}"
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
