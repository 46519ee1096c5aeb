"""Serving the API: one process, or N sharing a port under a small supervisor."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import time

from aiohttp import web

from image_service import tracing
from image_service.logs import configure_logging
from image_service.settings import Settings

log = logging.getLogger(__name__)


def event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (Linux and macOS): a cheaper loop under every request."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def serve(settings: Settings, *, reuse_port: bool = False, dev_tokens: bool = False) -> None:

    tracing.start("image-service-api")
    try:
        _run(settings, reuse_port=reuse_port, dev_tokens=dev_tokens)
    finally:
        tracing.stop()


def _run(settings: Settings, *, reuse_port: bool, dev_tokens: bool) -> None:
    from image_service.programs.app import create_app

    web.run_app(
        create_app(settings, dev_tokens=dev_tokens),
        host=settings.host,
        port=settings.port,
        print=None,
        access_log=None,  # every request is logged once, by the app's `observe` middleware
        # SIGTERM: stop listening, let requests in flight finish (this long at most), then exit.
        shutdown_timeout=settings.shutdown_grace_seconds,
        reuse_port=reuse_port or None,
        loop=event_loop(),
    )


def _serve_process(settings: Settings) -> None:
    """One of `serve --workers N`: its own process and event loop, on the shared port."""
    configure_logging(settings.log_level, settings.log_format)
    serve(settings, reuse_port=True)


def serve_processes(settings: Settings, workers: int) -> None:
    """N API processes on one port (SO_REUSEPORT: the kernel spreads connections over them).
    A process that dies is replaced; SIGTERM or SIGINT stops them all, each draining first."""
    context = multiprocessing.get_context("spawn")
    processes: dict[int, multiprocessing.process.BaseProcess] = {}
    stopping = False

    def start(slot: int) -> None:
        process = context.Process(target=_serve_process, args=(settings,), name=f"api-{slot}")
        process.start()
        processes[slot] = process

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for process in processes.values():
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for slot in range(workers):
        start(slot)
    while processes:
        for slot, process in list(processes.items()):
            process.join(timeout=0.2)
            if process.is_alive():
                continue
            del processes[slot]
            if not stopping:
                log.error("API process %s exited (%s); starting another", slot, process.exitcode)
                time.sleep(1)  # a process that cannot start must not spin
                start(slot)
    log.info("all %d API processes stopped", workers)
