"""bench/locustfile.py drives the whole lifecycle against a real service: Locust, headless, for
a few seconds, with no failure on any step."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from tests.integration.conftest import Api

LOCUSTFILE = Path(__file__).resolve().parents[2] / "bench" / "locustfile.py"
LOCUST = Path(sys.executable).parent / "locust"


async def test_the_locustfile_runs_whole_lifecycles_without_a_failure(api: Api) -> None:
    environment = api.child_environment()
    locust = await asyncio.create_subprocess_exec(
        *(str(LOCUST), "-f", str(LOCUSTFILE), "--headless", "--json", "--host", api.url),
        *("--users", "2", "--spawn-rate", "2", "--run-time", "8s", "--stop-timeout", "20"),
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(locust.communicate(), timeout=90)
    assert locust.returncode == 0, err.decode()[-3000:]
    stats = {entry["name"]: entry for entry in json.loads(out)}
    for step in ("/images/upload", "S3 PUT", "/images/[id]/complete", "wait for ready", "S3 GET"):
        assert stats[step]["num_requests"] > 0, step
    assert sum(entry["num_failures"] for entry in stats.values()) == 0, stats
