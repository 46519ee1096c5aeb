"""The `image-service` command: dev, serve, worker, init, token, loadtest, and the API's client
commands upload, import, list, download, delete, batch...

What only one command needs is imported by that command: the client's commands start without
the server's stack (aioboto3, the web app, the token verifier), about 0.3 s sooner each."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path

from dotenv import load_dotenv

from image_service import __version__, tracing
from image_service.client.cli import add_client_commands
from image_service.domain.errors import BackendUnavailable
from image_service.domain.jobs import DEFAULT_REPROCESS_BACKLOG as DEFAULT_BACKLOG
from image_service.logs import configure_logging
from image_service.settings import MAX_URL_EXPIRY_SECONDS, PREFIX, Settings, SettingsError


def _configure_logging(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format)


def cmd_serve(args: argparse.Namespace) -> None:
    from image_service.programs.serve import serve, serve_processes

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
        serve(settings)
    else:
        serve_processes(settings, args.workers)


def cmd_init(args: argparse.Namespace) -> None:
    from image_service.storage.clients import provision, provisioning_differences

    settings = Settings.from_env(verifies_tokens=False)
    _configure_logging(settings)
    if args.verify:
        differences = asyncio.run(provisioning_differences(settings))
        for difference in differences:
            print(difference)
        if differences:
            sys.exit(f"{len(differences)} difference(s): `image-service init` would change them")
        print(
            f"bucket {settings.bucket}, table {settings.table} and queue {settings.queue_name} "
            "are as the service needs them: nothing to create or change"
        )
        return
    asyncio.run(provision(settings))
    print(
        f"bucket {settings.bucket}, table {settings.table} and queue {settings.queue_name} "
        "are ready"
    )


def cmd_token(args: argparse.Namespace) -> None:
    from image_service.auth.tokens import issue_token

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
    from image_service.programs.worker import run_worker

    settings = Settings.from_env()
    _configure_logging(settings)
    tracing.start("image-service-worker")
    try:
        asyncio.run(run_worker(settings))
    finally:
        tracing.stop()


def cmd_sweep(args: argparse.Namespace) -> None:
    from image_service.programs.worker import sweep_once

    settings = Settings.from_env()
    _configure_logging(settings)
    try:
        report = asyncio.run(sweep_once(settings))
    except BackendUnavailable as outage:
        # Whatever it did stands; what it could not do is found again by the next sweep.
        print(f"sweep stopped: {outage}; run it again to finish", file=sys.stderr)
        raise SystemExit(2) from None
    for owner, image_id in report.requeued:
        print(f"job queued again: {owner}/{image_id}")
    for owner, image_id in report.deleted:
        print(f"delete finished: {owner}/{image_id}")
    for job in report.relayed:
        print(f"owed {job.get('type')} job relayed: {job.get('id')}")
    print(
        f"swept: {len(report.requeued)} requeued, {len(report.deleted)} deletes finished, "
        f"{len(report.purged)} purged from the trash, {len(report.relayed)} owed jobs relayed"
    )


def cmd_reconcile(args: argparse.Namespace) -> None:
    from image_service.ops.reconcile import RecordWithoutObject, reconcile
    from image_service.programs.services import open_services

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
    from image_service.ops.migrate import migrate
    from image_service.programs.services import open_services

    settings = Settings.from_env(verifies_tokens=False)
    _configure_logging(settings)

    async def run() -> int:
        try:
            async with open_services(settings) as services:
                report = await migrate(
                    services.images.completion,
                    services.store,
                    services.repository,
                    apply=args.apply,
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
        indexed = "indexed" if args.apply else "would index"
        print(
            f"{verb} {len(report.migrated)}, completed {len(report.resumed)} left uploads, "
            f"{len(report.refused)} refused, {indexed} {len(report.indexed)} digests{dry_run}"
        )
        return 0 if report.clean else 1

    raise SystemExit(asyncio.run(run()))


def cmd_reprocess(args: argparse.Namespace) -> None:
    from image_service.domain.models import format_timestamp
    from image_service.domain.ports import utc_now
    from image_service.domain.workers import LIVE_SECONDS, laggards
    from image_service.ops.reprocess import reprocess
    from image_service.programs.services import open_services, processing_policy

    settings = Settings.from_env(verifies_tokens=False)
    _configure_logging(settings)
    fingerprint = processing_policy(settings).fingerprint
    verb = "queued" if args.apply else "would queue"

    async def run() -> int:
        count = 0
        try:
            async with open_services(settings) as services:
                behind = await laggards(services.repository, fingerprint, utc_now)
                if behind:
                    # Their jobs would find the images processed as they process, and skip.
                    refused = "reprocess refused" if args.apply else "--apply would be refused"
                    print(
                        f"{refused}: {len(behind)} live worker(s) run other settings "
                        f"than {fingerprint}; restart them with these settings (or wait "
                        f"{LIVE_SECONDS} s after they stop) and run it again:",
                        file=sys.stderr,
                    )
                    for beat in behind:
                        print(
                            f"  worker {beat.worker_id} on {beat.host}: settings "
                            f"{beat.fingerprint}, last seen {format_timestamp(beat.seen_at)}",
                            file=sys.stderr,
                        )
                    if args.apply:
                        return 3
                found = reprocess(
                    services.repository,
                    services.jobs,
                    fingerprint,
                    apply=args.apply,
                    owner=args.user,
                    everything=args.all,
                    backlog=args.backlog,
                )
                async for owner, image_id in found:  # printed as queued: tables may be huge
                    count += 1
                    print(f"{verb}: {owner}/{image_id}", flush=True)
        except BackendUnavailable as outage:
            # What was queued will be done; what was not is found again by the next run.
            print(f"reprocess stopped: {outage}; run it again to resume", file=sys.stderr)
            return 2
        dry_run = "" if args.apply else " (a dry run: --apply to queue them)"
        print(f"{verb} {count} images for processing as {fingerprint}{dry_run}")
        return 0

    raise SystemExit(asyncio.run(run()))


def cmd_dev(args: argparse.Namespace) -> None:
    from image_service.programs.dev import run_dev

    run_dev(host=args.host, port=args.port)


def cmd_loadtest(args: argparse.Namespace) -> None:
    from image_service.client import loadtest
    from image_service.programs.dev import dev_process

    async def drive() -> loadtest.Results:
        secret = args.jwt_secret or os.environ.get(PREFIX + "JWT_SECRET")
        async with AsyncExitStack() as stack:
            url = args.url
            if args.dev:
                secret = secret or secrets.token_urlsafe(32)
                url = await stack.enter_async_context(dev_process(secret))
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
            return await loadtest.run(plan, progress=not args.json)

    try:
        results = asyncio.run(drive())
    except ValueError as exc:
        raise SystemExit(f"loadtest: {exc}") from None
    summary = results.summary()
    if args.report is not None:
        from image_service.client.report import html_report

        args.report.write_text(html_report(results, summary), encoding="utf-8")
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(loadtest.format_report(summary))
    if summary["error_count"]:
        sys.exit(1)


# What may still be under way is not judged by reconcile: an upload URL's longest life.
RECONCILE_GRACE_SECONDS = MAX_URL_EXPIRY_SECONDS


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be zero or more")
    return value


def _owner(text: str) -> str:
    from image_service.auth.tokens import valid_subject

    if not valid_subject(text):
        raise argparse.ArgumentTypeError("not an owner: empty, too long or unprintable")
    return text


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
    load.add_argument(
        "--report",
        type=Path,
        metavar="FILE.html",
        help="also write a self-contained HTML report: throughput and latency over time",
    )
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

    reprocess = commands.add_parser(
        "reprocess",
        help="process ready images again where processing changed since (variants, GPS, "
        "metadata); they stay served meanwhile (a dry run unless --apply)",
    )
    reprocess.add_argument("--apply", action="store_true", help="queue; without it, only report")
    reprocess.add_argument("--user", type=_owner, metavar="OWNER", help="only this owner's images")
    reprocess.add_argument(
        "--all",
        action="store_true",
        help="every ready image, even those processed as the settings say now",
    )
    reprocess.add_argument(
        "--backlog",
        type=_positive_int,
        default=DEFAULT_BACKLOG,
        help=f"queue only while fewer jobs than this wait, so uploads never wait behind more "
        f"(default {DEFAULT_BACKLOG})",
    )
    reprocess.set_defaults(func=cmd_reprocess)

    init = commands.add_parser(
        "init", help="create the bucket, table and queues, or bring them up to date (idempotent)"
    )
    init.add_argument(
        "--verify",
        action="store_true",
        help="change nothing: list what init would create or change (resources made by a "
        "CloudFormation stack, say) and exit non-zero if anything",
    )
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
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse leaves a positional list after options unread (`batch tag --tag x ID`, its
    # python/cpython#59317): a command that names where such words go (`trailing`) takes them.
    trailing: str | None = getattr(args, "trailing", None)
    if extra:
        if trailing is None or any(word.startswith("-") for word in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        getattr(args, trailing).extend(extra)
    try:
        args.func(args)
    except SettingsError as exc:
        print(f"image-service: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
