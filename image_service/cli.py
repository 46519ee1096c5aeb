"""The `image-service` command: dev, serve, worker, init, token, loadtest, and the API's client
commands upload, list, download, delete."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import multiprocessing
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from aiohttp import web
from dotenv import load_dotenv

from image_service import __version__
from image_service.auth import DEV_TOKEN_TTL_SECONDS, DEV_USER, issue_token
from image_service.backends import provision
from image_service.client_cli import TOKEN_VARIABLE, URL_VARIABLE, add_client_commands
from image_service.errors import BackendUnavailable
from image_service.logs import configure_logging
from image_service.settings import MAX_URL_EXPIRY_SECONDS, PREFIX, Settings, SettingsError


def _configure_logging(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format)


def _event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (Linux and macOS): a cheaper loop under every request."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _serve(settings: Settings, *, reuse_port: bool = False, dev_tokens: bool = False) -> None:
    from image_service.web.app import create_app

    web.run_app(
        create_app(settings, dev_tokens=dev_tokens),
        host=settings.host,
        port=settings.port,
        print=None,
        access_log=None,  # every request is logged once, by the app's `observe` middleware
        # SIGTERM: stop listening, let requests in flight finish (this long at most), then exit.
        shutdown_timeout=settings.shutdown_grace_seconds,
        reuse_port=reuse_port or None,
        loop=_event_loop(),
    )


def _serve_worker(settings: Settings) -> None:
    """One of `serve --workers N`: its own process and event loop, on the shared port."""
    _configure_logging(settings)
    _serve(settings, reuse_port=True)


def _serve_workers(settings: Settings, workers: int) -> None:
    """N API processes on one port (SO_REUSEPORT: the kernel spreads connections over them).
    A process that dies is replaced; SIGTERM or SIGINT stops them all, each draining first."""
    log = logging.getLogger(__name__)
    context = multiprocessing.get_context("spawn")
    processes: dict[int, multiprocessing.process.BaseProcess] = {}
    stopping = False

    def start(slot: int) -> None:
        process = context.Process(target=_serve_worker, args=(settings,), name=f"api-{slot}")
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


def cmd_serve(args: argparse.Namespace) -> None:
    settings = Settings.from_env()
    _configure_logging(settings)
    logging.getLogger(__name__).info(
        "serving on http://%s:%s (%d process%s)",
        settings.host,
        settings.port,
        args.workers,
        "" if args.workers == 1 else "es",
    )
    if args.workers == 1:
        _serve(settings)
    else:
        _serve_workers(settings, args.workers)


def cmd_init(args: argparse.Namespace) -> None:
    settings = Settings.from_env(verifies_tokens=False)
    _configure_logging(settings)
    asyncio.run(provision(settings))
    print(
        f"bucket {settings.bucket}, table {settings.table} and queue {settings.queue_name} "
        "are ready"
    )


def cmd_token(args: argparse.Namespace) -> None:
    settings = Settings.from_env()
    if not settings.jwt_secret:
        raise SettingsError(f"{PREFIX}JWT_SECRET: is required to mint tokens")
    print(
        issue_token(
            settings.jwt_secret,
            args.user,
            admin=args.admin,
            ttl_seconds=args.ttl,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
        )
    )


def cmd_worker(args: argparse.Namespace) -> None:
    from image_service.metrics import WorkerMetrics
    from image_service.services import make_sweeper, make_worker, open_services, running
    from image_service.web.worker_endpoint import worker_endpoint

    settings = Settings.from_env()
    _configure_logging(settings)
    log = logging.getLogger(__name__)

    async def work() -> None:
        stop = asyncio.Event()
        # SIGTERM (a deploy, a scale-in) stops polling; `running` lets jobs in flight finish.
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        metrics = WorkerMetrics()
        worker_grace = settings.shutdown_grace_seconds
        async with (
            worker_endpoint(metrics, settings.host, settings.worker_metrics_port),
            open_services(settings) as services,
            running(make_worker(settings, services, metrics=metrics), grace_seconds=worker_grace),
        ):
            sweeping = asyncio.create_task(
                make_sweeper(settings, services, metrics=metrics).run(
                    settings.sweep_interval_seconds
                )
            )
            log.info("worker polling %s", settings.queue_name)
            await stop.wait()
            sweeping.cancel()  # a sweep cut short is safe: each image it acts on is claimed first
            with contextlib.suppress(asyncio.CancelledError):
                await sweeping
        log.info("worker stopped")

    asyncio.run(work())


def cmd_sweep(args: argparse.Namespace) -> None:
    from image_service.services import make_sweeper, open_services

    settings = Settings.from_env()
    _configure_logging(settings)

    async def sweep() -> None:
        async with open_services(settings) as services:
            report = await make_sweeper(settings, services).sweep()
        for owner, image_id in report.requeued:
            print(f"processing queued again: {owner}/{image_id}")
        for owner, image_id in report.deleted:
            print(f"delete finished: {owner}/{image_id}")
        print(f"swept: {len(report.requeued)} requeued, {len(report.deleted)} deletes finished")

    asyncio.run(sweep())


def cmd_reconcile(args: argparse.Namespace) -> None:
    from image_service.domain.reconcile import RecordWithoutObject, reconcile
    from image_service.services import open_services

    settings = Settings.from_env()
    _configure_logging(settings)

    async def run() -> int:
        records = objects = 0
        async with open_services(settings) as services:
            findings = reconcile(
                services.store,
                services.repository,
                fix=args.fix,
                grace=timedelta(seconds=args.grace_seconds),
            )
            async for finding in findings:  # printed as found: the bucket may be huge
                if isinstance(finding, RecordWithoutObject):
                    records += 1
                    print(f"record without object: {finding.user_id}/{finding.image_id}")
                else:
                    objects += 1
                    print(f"object without record: {finding.key}")
        clean = not records and not objects
        verdict = "consistent" if clean else ("repaired" if args.fix else "inconsistent")
        print(f"{verdict}: {records} records without objects, {objects} objects without records")
        return 0 if clean or args.fix else 1

    raise SystemExit(asyncio.run(run()))


def cmd_migrate(args: argparse.Namespace) -> None:
    from image_service.domain.migrate import migrate
    from image_service.services import open_services

    settings = Settings.from_env(verifies_tokens=False)
    _configure_logging(settings)

    async def run() -> int:
        try:
            async with open_services(settings) as services:
                report = await migrate(
                    services.images, services.store, services.repository, apply=args.apply
                )
        except BackendUnavailable as outage:
            # Nothing is lost: each image is taken in by one write, and the next run resumes.
            print(f"migration stopped: {outage}; run it again to resume", file=sys.stderr)
            return 2
        verb = "migrated" if args.apply else "would migrate"
        for owner, image_id in report.migrated:
            print(f"{verb}: {owner}/{image_id}")
        for owner, image_id in report.resumed:
            print(f"completed a left upload: {owner}/{image_id}")
        for owner, image_id, reason in report.refused:
            print(f"not migrated ({reason}): {owner}/{image_id}")
        dry_run = "" if args.apply else " (a dry run: --apply to migrate)"
        print(
            f"{verb} {len(report.migrated)}, completed {len(report.resumed)} left uploads, "
            f"{len(report.refused)} refused{dry_run}"
        )
        return 0 if report.clean else 1

    raise SystemExit(asyncio.run(run()))


def cmd_dev(args: argparse.Namespace) -> None:
    from image_service.embedded import moto_server, sample_photo

    if not os.environ.get(PREFIX + "JWT_SECRET"):
        # A fresh key per run: dev tokens are printed below and die with the process.
        os.environ[PREFIX + "JWT_SECRET"] = secrets.token_urlsafe(32)
    settings = Settings.from_env()
    # IMAGE_SERVICE_HOST and _PORT as everywhere; a flag on the command line wins over them.
    settings = dataclasses.replace(
        settings,
        host=args.host or settings.host,
        port=settings.port if args.port is None else args.port,
        embedded_worker=True,
    )
    _configure_logging(settings)
    with moto_server() as endpoint, tempfile.TemporaryDirectory(prefix="image-service-") as tmp:
        asyncio.run(provision(settings))
        token = issue_token(settings.jwt_secret, DEV_USER, ttl_seconds=DEV_TOKEN_TTL_SECONDS)
        base = f"http://{settings.host}:{settings.port}"
        photo = sample_photo(Path(tmp))
        command = _this_command()
        print(
            f"""
image_service {__version__} (dev): moto S3 + DynamoDB + SQS at {endpoint}; worker in-process

  Page     {base}/          (upload from the browser: "Mint a dev token", then drop files)
  API      {base}
  Docs     {base}/docs
  Token    (user "{DEV_USER}", valid 24 h)

  Try it in another shell (every line as it is):
    export TOKEN={token}
    curl -s -X POST {base}/images/upload -H "Authorization: Bearer $TOKEN" \\
         -H "Content-Type: application/json" -d '{{"content_type": "image/jpeg", "tags": ["demo"]}}'
    export {TOKEN_VARIABLE}=$TOKEN {URL_VARIABLE}={base}
    {command} upload {shlex.quote(str(photo))} --tag demo --wait && {command} list
""",
            flush=True,
        )
        _serve(settings, dev_tokens=True)


def _this_command() -> str:
    """How a shell reaches this program: its name when PATH finds this very one (an activated
    virtualenv, an install), else its full path (`make run` calls .venv/bin/image-service)."""
    installed = Path(sys.executable).parent / "image-service"
    if not installed.exists():
        return f"{shlex.quote(sys.executable)} -m image_service"
    found = shutil.which("image-service")
    if found is not None and Path(found).resolve() == installed.resolve():
        return "image-service"
    return shlex.quote(str(installed.absolute()))


def cmd_loadtest(args: argparse.Namespace) -> None:
    from image_service import loadtest

    secret = args.jwt_secret or os.environ.get(PREFIX + "JWT_SECRET")
    url = args.url
    dev = None
    try:
        if args.dev:
            secret = secret or secrets.token_urlsafe(32)
            dev, url = _start_dev(secret)
        plan = loadtest.make_plan(
            url=url,
            users=args.users,
            count=args.count,
            duration=args.duration,
            keep_every=args.keep_every,
            jwt_secret=secret,
            token=args.token,
            allow_remote=args.allow_remote,
        )
        results = asyncio.run(loadtest.run(plan, progress=not args.json))
    except ValueError as exc:
        raise SystemExit(f"loadtest: {exc}") from None
    finally:
        if dev is not None:
            dev.send_signal(signal.SIGTERM)
            dev.wait(timeout=30)
    summary = results.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(loadtest.format_report(summary))
    if summary["error_count"]:
        sys.exit(1)


def _start_dev(secret: str) -> tuple[subprocess.Popen[bytes], str]:
    """`image-service dev` on a spare port, for `loadtest --dev`: a whole stack to load."""
    from image_service.embedded import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    environment = {
        **os.environ,
        PREFIX + "JWT_SECRET": secret,
        # Each virtual user is one user: the per-user limit would shape the load, not measure it.
        PREFIX + "UPLOAD_RATE_PER_MINUTE": "1000000",
        PREFIX + "UPLOAD_BURST": "1000000",
        PREFIX + "LOG_LEVEL": "WARNING",
    }
    dev = subprocess.Popen(  # noqa: S603  # this very program, fixed arguments
        [sys.executable, "-m", "image_service", "dev", "--port", str(port)],
        env=environment,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as response:  # noqa: S310  # loopback
                if response.status == 200:
                    return dev, url
        except OSError:
            time.sleep(0.2)
    dev.kill()
    raise SystemExit("loadtest: image-service dev did not start within 60 s")


# What may still be under way is not judged by reconcile: an upload URL's longest life.
RECONCILE_GRACE_SECONDS = MAX_URL_EXPIRY_SECONDS


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be zero or more")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 256:
        raise argparse.ArgumentTypeError("must be between 1 and 256")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="image-service", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)

    dev = commands.add_parser("dev", help="API on embedded moto S3 + DynamoDB (no Docker, no AWS)")
    dev.add_argument("--host", help="listen address (default: IMAGE_SERVICE_HOST, 127.0.0.1)")
    dev.add_argument("--port", type=int, help="port (default: IMAGE_SERVICE_PORT, 8080)")
    dev.set_defaults(func=cmd_dev)

    serve = commands.add_parser("serve", help="API only, on the configured AWS backends")
    serve.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="API processes sharing the port (SO_REUSEPORT); about one per core (default 1)",
    )
    serve.set_defaults(func=cmd_serve)

    load = commands.add_parser(
        "loadtest",
        help="drive a running service through whole upload lifecycles and report",
        description=(
            "Virtual users repeat the lifecycle: upload URL, PUT to S3, complete, wait until "
            "processed, list, download, delete. Tokens are minted with IMAGE_SERVICE_JWT_SECRET "
            "(or --jwt-secret) for users loadtest-0..N-1, or one --token is used by all."
        ),
    )
    load.add_argument("--url", default="http://127.0.0.1:8080", help="the API (loopback only)")
    load.add_argument("--users", type=int, default=8, help="concurrent virtual users (<= 1000)")
    load.add_argument("--count", type=int, help="lifecycles in all, then stop")
    load.add_argument("--duration", type=float, help="seconds to run, then stop (<= 3600)")
    load.add_argument(
        "--keep-every", type=int, default=0, help="keep every Nth image instead of deleting it"
    )
    load.add_argument("--jwt-secret", help="HS256 key to mint tokens (default: from the env)")
    load.add_argument("--token", help="one bearer token for every virtual user")
    load.add_argument("--dev", action="store_true", help="start `image-service dev` to load")
    load.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --url")
    load.add_argument("--json", action="store_true", help="print the results as JSON")
    load.set_defaults(func=cmd_loadtest)

    worker = commands.add_parser("worker", help="process the queue: scans, variants, GPS removal")
    worker.set_defaults(func=cmd_worker)

    sweep = commands.add_parser(
        "sweep",
        help="drive on images stuck processing or deleting (each worker also does, periodically)",
    )
    sweep.set_defaults(func=cmd_sweep)

    reconcile = commands.add_parser(
        "reconcile", help="report records without objects and objects without records"
    )
    reconcile.add_argument("--fix", action="store_true", help="repair what is found")
    reconcile.add_argument(
        "--grace-seconds",
        type=_non_negative_int,
        default=RECONCILE_GRACE_SECONDS,
        help="judge nothing changed more recently than this (default 3600: an upload URL's "
        "longest life; 0 only while nothing writes)",
    )
    reconcile.set_defaults(func=cmd_reconcile)

    migrate = commands.add_parser(
        "migrate",
        help="take in the original service's images (a dry run unless --apply)",
    )
    migrate.add_argument("--apply", action="store_true", help="migrate; without it, only report")
    migrate.set_defaults(func=cmd_migrate)

    init = commands.add_parser("init", help="create the bucket, table and index (idempotent)")
    init.set_defaults(func=cmd_init)

    token = commands.add_parser("token", help="print a bearer token signed with the configured key")
    token.add_argument("user")
    token.add_argument("--admin", action="store_true", help="add the admin scope")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    token.set_defaults(func=cmd_token)

    add_client_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    load_dotenv()  # a .env in the working directory, never overriding the real environment
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except SettingsError as exc:
        print(f"image-service: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
