"""Readiness: is every backend the service needs answering?"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from image_service.domain.errors import NotReady, ServiceError

Probe = Callable[[], Awaitable[None]]


async def _probe(probe: Probe, limit_seconds: float) -> str:
    try:
        async with asyncio.timeout(limit_seconds):
            await probe()
    except TimeoutError:
        return "timeout"
    except ServiceError as exc:
        return exc.code
    return "ok"


async def check_backends(probes: Mapping[str, Probe], *, limit_seconds: float) -> dict[str, str]:
    """Probes every backend at once; raises NotReady naming each one that failed."""
    results = await asyncio.gather(*(_probe(probe, limit_seconds) for probe in probes.values()))
    checks = dict(zip(probes, results, strict=True))
    failing = sorted(name for name, result in checks.items() if result != "ok")
    if failing:
        raise NotReady(f"Unavailable: {', '.join(failing)}.", details={"checks": checks})
    return checks
