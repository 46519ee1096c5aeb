"""`image-service upload | import | list | download | delete | batch ...`: the API from a shell,
through the client.

They talk to a running service: ``--url`` (or ``IMAGE_SERVICE_API_URL``, default
``http://127.0.0.1:8080``) with ``--token`` (or ``IMAGE_SERVICE_API_TOKEN``). Results go to
stdout, one line per image, so they pipe; progress and errors go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

from image_service.client import shell
from image_service.client import state as upload_state
from image_service.client.api import MULTIPART_THRESHOLD_BYTES, ImageServiceClient
from image_service.client.cli_sharing import add_sharing_commands
from image_service.client.parts import FileSource
from image_service.client.transfer import DEFAULT_PARTS_AT_ONCE
from image_service.client.types import ApiError, Image, ImageServiceError, Job, Progress
from image_service.imaging.formats import FILE_EXTENSIONS, content_type_from_magic

MAX_PARALLEL_UPLOADS = 16


class ProgressBar:
    """One line on a terminal for all the bytes of all the files; silent when not a terminal."""

    WIDTH = 30

    def __init__(self, total_bytes: int, files: int, stream: TextIO = sys.stderr) -> None:
        self.total = max(total_bytes, 1)
        self.files = files
        self.done_files = 0
        self.sent: dict[int, int] = {}
        self.stream = stream
        self.enabled = stream.isatty()

    def sent_bytes(self, slot: int) -> Callable[[int, int], None]:
        def report(sent: int, _total: int) -> None:
            self.sent[slot] = sent
            self.draw()

        return report

    def file_done(self) -> None:
        self.done_files += 1
        self.draw()

    def draw(self) -> None:
        if not self.enabled:
            return
        fraction = min(sum(self.sent.values()) / self.total, 1.0)
        filled = int(fraction * self.WIDTH)
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (self.WIDTH - filled)}] {fraction:4.0%} "
            f"{sum(self.sent.values()) / 1e6:.1f}/{self.total / 1e6:.1f} MB "
            f"{self.done_files}/{self.files} files"
        )
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self.stream.write("\n")


def cmd_upload(args: argparse.Namespace) -> None:
    paths = [Path(p) for p in args.files]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"image-service upload: no such file: {', '.join(missing)}")
    sizes = [p.stat().st_size for p in paths]
    bar = ProgressBar(sum(sizes), len(paths))
    slots = asyncio.Semaphore(args.parallel)

    async def upload_one(images: ImageServiceClient, slot: int, path: Path) -> Image | None:
        async with slots:
            try:
                if sizes[slot] > MULTIPART_THRESHOLD_BYTES:
                    image = await _upload_in_parts(images, args, path, bar.sent_bytes(slot))
                else:
                    image = await images.upload(
                        await asyncio.to_thread(path.read_bytes),
                        tags=args.tag,
                        description=args.description,
                        filename=path.name,
                        progress=bar.sent_bytes(slot),
                        wait=args.wait,
                        skip_existing=args.skip_existing,
                    )
            except (ImageServiceError, ValueError, OSError) as exc:
                shell.fail(path, exc)
                return None
            bar.file_done()
            if image.existing:
                print(f"{path}: already uploaded as {image.image_id}", file=sys.stderr)
            return image

    async def upload_all(images: ImageServiceClient) -> int:
        done = await asyncio.gather(*(upload_one(images, n, p) for n, p in enumerate(paths)))
        bar.finish()
        for path, image in zip(paths, done, strict=True):
            if image is not None:
                print(f"{image.image_id}\t{image.status}\t{path}")
        failed = sum(image is None for image in done)
        return 1 if failed else 0

    shell.run(args, upload_all)


async def _upload_in_parts(
    images: ImageServiceClient, args: argparse.Namespace, path: Path, progress: Progress
) -> Image:
    """A large file, in parts, its progress kept in a state file until it is complete; with
    ``--resume``, an interrupted upload of the same unchanged file sends only what is missing."""
    source = FileSource(path)
    content_type = content_type_from_magic(await source.read(0, 64))
    if content_type is None:
        raise ValueError("not a recognised image")
    state = upload_state.load(images.base_url, path) if args.resume else None
    image: Image | None = None
    if state is not None:
        try:
            image = await images.resume_upload(
                state.image_id,
                source,
                parts_at_once=args.parts_at_once,
                progress=progress,
                wait=args.wait,
            )
        except ApiError as exc:
            if exc.code == "upload_completed":  # assembled before the interruption
                image = await images.complete(state.image_id)
                if args.wait:
                    image = await images.wait_until_processed(image.image_id)
            elif exc.status != 404:  # gone (deleted, expired): start again below
                raise
    if image is None:
        image = await images.upload_multipart(
            source,
            content_type,
            tags=args.tag,
            description=args.description,
            filename=path.name,
            parts_at_once=args.parts_at_once,
            skip_existing=args.skip_existing,
            progress=progress,
            started=lambda ticket: upload_state.save(
                upload_state.UploadState.of(images.base_url, path, ticket.image_id)
            ),
            wait=args.wait,
        )
    upload_state.forget(images.base_url, path)
    return image


def cmd_list(args: argparse.Namespace) -> None:
    async def list_all(images: ImageServiceClient) -> int:
        shown = 0
        try:
            async for image in images.iter_images(
                tags=args.tag, status=args.status, start=args.since, end=args.until
            ):
                if args.json:
                    print(json.dumps(_as_json(image)))
                else:
                    print(shell.row(image))
                shown += 1
                if args.limit is not None and shown >= args.limit:
                    break
        except ImageServiceError as exc:
            shell.fail("list", exc)
            return 1
        return 0

    shell.run(args, list_all)


def _as_json(image: Image) -> dict[str, Any]:
    return {
        "image_id": image.image_id,
        "status": image.status,
        "content_type": image.content_type,
        "size": image.size,
        "width": image.width,
        "height": image.height,
        "tags": list(image.tags),
        "description": image.description,
        "filename": image.filename,
        "upload_time": image.upload_time.isoformat(),
    }


def cmd_download(args: argparse.Namespace) -> None:
    async def download(images: ImageServiceClient) -> int:
        rendition = args.width is not None or args.height is not None or args.preset is not None
        try:
            image = await images.get(args.image_id)
            if rendition:
                data, content_type = await images.render(
                    args.image_id,
                    width=args.width,
                    height=args.height,
                    fit=args.fit,
                    format=args.format or "auto",
                    preset=args.preset,
                )
                name = f"{image.image_id}-{args.preset or f'{args.width or 0}x{args.height or 0}'}"
                default_name = name + FILE_EXTENSIONS.get(content_type, ".bin")
            else:
                data = await images.download(
                    args.image_id, variant=args.variant, format=args.format
                )
                default_name = _default_name(image, args.variant, args.format)
        except ImageServiceError as exc:
            shell.fail(args.image_id, exc)
            return 1
        if args.output == "-":
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            return 0
        target = Path(args.output or default_name)
        await asyncio.to_thread(target.write_bytes, data)
        print(target)
        return 0

    shell.run(args, download)


def _default_name(image: Image, variant: str | None, variant_format: str | None) -> str:
    if variant is None:
        return image.image_id + FILE_EXTENSIONS.get(image.content_type, ".bin")
    content_type = f"image/{variant_format or 'jpeg'}"  # the service's default variant format
    return f"{image.image_id}-{variant}{FILE_EXTENSIONS.get(content_type, '.bin')}"


async def _each(
    args: argparse.Namespace, verb: str, act: Callable[[str], Awaitable[object]]
) -> int:
    """Does ``act`` to every image id given, reporting each; exit status 1 if any failed."""
    failed = 0
    for image_id in args.image_ids:
        try:
            await act(image_id)
        except ImageServiceError as exc:
            shell.fail(image_id, exc)
            failed += 1
        else:
            print(f"{verb} {image_id}")
    return 1 if failed else 0


def cmd_delete(args: argparse.Namespace) -> None:
    verb = "deleted" if args.permanent else "trashed"
    shell.run(
        args,
        lambda images: _each(
            args, verb, lambda image_id: images.delete(image_id, permanent=args.permanent)
        ),
    )


def cmd_restore(args: argparse.Namespace) -> None:
    shell.run(args, lambda images: _each(args, "restored", images.restore))


def cmd_import(args: argparse.Namespace) -> None:
    slots = asyncio.Semaphore(args.parallel)

    async def import_one(images: ImageServiceClient, url: str) -> Image | None:
        async with slots:
            try:
                image = await images.import_url(url, tags=args.tag, description=args.description)
                print(f"{url}: fetching as {image.image_id}", file=sys.stderr)
                if args.wait:
                    image = await images.wait_until_processed(image.image_id, max_wait=300)
            except ImageServiceError as exc:
                shell.fail(url, exc)
                return None
            return image

    async def import_all(images: ImageServiceClient) -> int:
        done = await asyncio.gather(*(import_one(images, url) for url in args.urls))
        failed = 0
        for url, image in zip(args.urls, done, strict=True):
            if image is None:
                failed += 1
                continue
            reason = f"\t{image.reason}" if image.reason else ""
            print(f"{image.image_id}\t{image.status}\t{url}{reason}")
            failed += image.status == "rejected"
        return 1 if failed else 0

    shell.run(args, import_all)


def cmd_batch(args: argparse.Namespace) -> None:
    image_ids = list(args.image_ids)
    if args.ids_from_stdin:
        # The first column of each line: `image-service list` and `import` print ids there.
        lines = sys.stdin.read().splitlines()
        image_ids += [line.split("\t", 1)[0].strip() for line in lines if line.strip()]
    if bool(image_ids) == bool(args.by_tag):
        raise SystemExit("image-service batch: give image ids (or --stdin) or --by-tag, one")
    focal = None
    if args.focal:
        x, _, y = args.focal.partition(",")
        focal = (float(x), float(y))

    def report(job: Job) -> None:
        total = "?" if job.total is None else str(job.total)
        print(f"job {job.job_id}: {job.state}, {job.processed}/{total}", file=sys.stderr)

    async def run(images: ImageServiceClient) -> int:
        try:
            answer = await images.batch(
                args.op,
                image_ids=image_ids or None,
                tag=args.by_tag,
                tags=args.tag,
                focal=focal,
                permanent=args.permanent,
            )
            results = answer.results
            if answer.job is not None:
                job = await images.wait_for_job(answer.job.job_id, progress=report)
                print(f"{job.succeeded} ok, {job.failed} failed")
                results = job.errors
        except ImageServiceError as exc:
            shell.fail(args.op, exc)
            return 1
        for image_id, result in results:
            print(f"{image_id}\t{result}")
        return 1 if any(result != "ok" for _, result in results) else 0

    shell.run(args, run)


def cmd_trash(args: argparse.Namespace) -> None:
    async def trash(images: ImageServiceClient) -> int:
        if args.empty:
            print(f"purged {await images.empty_trash()} images from the trash")
            return 0
        async for image in images.iter_images(status="trashed"):
            print(shell.row(image))
        return 0

    shell.run(args, trash)


def _parallel(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_PARALLEL_UPLOADS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_PARALLEL_UPLOADS}")
    return value


def add_client_commands(commands: Any) -> None:
    """Adds the client's commands to the `image-service` parser's subcommands."""
    connection = shell.connection_flags()
    # What a new image is given, whether uploaded or imported.
    details = argparse.ArgumentParser(add_help=False)
    details.add_argument("--tag", action="append", default=[], help="a tag (repeatable)")
    details.add_argument("--description", default="", help="one description for every image")

    upload = commands.add_parser(
        "upload",
        parents=[connection, details],
        help="upload image files straight to S3 and complete them; prints their ids",
    )
    upload.add_argument("files", nargs="+", metavar="FILE")
    upload.add_argument(
        "--parallel", type=_parallel, default=4, help="files uploaded at once (default 4)"
    )
    upload.add_argument(
        "--parts-at-once",
        type=_parallel,
        default=DEFAULT_PARTS_AT_ONCE,
        help=f"parts of one large file sent at once (default {DEFAULT_PARTS_AT_ONCE}); files "
        f"over {MULTIPART_THRESHOLD_BYTES // 2**20} MiB go in parts",
    )
    upload.add_argument(
        "--resume",
        action="store_true",
        help="finish an interrupted upload of the same (unchanged) large file: only the "
        "parts S3 does not hold are sent",
    )
    upload.add_argument(
        "--skip-existing",
        action="store_true",
        help="do not upload a file you already have an image of (same SHA-256); print its id",
    )
    upload.add_argument("--wait", action="store_true", help="wait until each one is processed")
    upload.set_defaults(func=cmd_upload)

    listing = commands.add_parser(
        "list", parents=[connection], help="list your images, newest first (tab-separated)"
    )
    listing.add_argument("--tag", action="append", default=[], help="must have it (repeatable)")
    listing.add_argument("--status", help="pending, processing, ready, rejected, quarantined...")
    listing.add_argument("--since", help="uploaded at or after (ISO date or date-time)")
    listing.add_argument("--until", help="uploaded at or before (a bare date includes the day)")
    listing.add_argument("--limit", type=int, help="show at most this many")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(func=cmd_list)

    download = commands.add_parser(
        "download", parents=[connection], help="download an image (or a variant) to a file"
    )
    download.add_argument("image_id")
    download.add_argument("-o", "--output", help="file to write ('-' for stdout)")
    download.add_argument("--variant", help="a variant's name, e.g. thumb")
    download.add_argument(
        "--format", help="jpeg, webp or avif (a rendition's default: the best this client takes)"
    )
    download.add_argument("--width", type=int, help="a rendition at most this wide (px)")
    download.add_argument("--height", type=int, help="a rendition at most this high (px)")
    download.add_argument(
        "--fit", default="inside", choices=("inside", "contain", "cover"), help="a rendition's fit"
    )
    download.add_argument("--preset", help="a named rendition (the service's presets)")
    download.set_defaults(func=cmd_download)

    delete = commands.add_parser(
        "delete", parents=[connection], help="move images to the trash by id (or delete them)"
    )
    delete.add_argument("image_ids", nargs="+", metavar="IMAGE_ID")
    delete.add_argument(
        "--permanent", action="store_true", help="delete at once, for good (not to the trash)"
    )
    delete.set_defaults(func=cmd_delete)

    restore = commands.add_parser(
        "restore", parents=[connection], help="bring images back from the trash, as they were"
    )
    restore.add_argument("image_ids", nargs="+", metavar="IMAGE_ID")
    restore.set_defaults(func=cmd_restore)

    imports = commands.add_parser(
        "import",
        parents=[connection, details],
        help="import images from URLs: the service fetches them; prints id, status, URL",
    )
    imports.add_argument("urls", nargs="+", metavar="URL")
    imports.add_argument(
        "--parallel", type=_parallel, default=4, help="URLs imported at once (default 4)"
    )
    imports.add_argument(
        "--wait", action="store_true", help="wait until each is ready or rejected (and why)"
    )
    imports.set_defaults(func=cmd_import)

    batch = commands.add_parser(
        "batch",
        parents=[connection],
        help="tag, untag, delete, restore or set_focal on many images (ids, --stdin, or "
        "--by-tag); waits for a job, printing its progress",
    )
    batch.add_argument("op", choices=("tag", "untag", "delete", "restore", "set_focal"))
    batch.add_argument("image_ids", nargs="*", metavar="IMAGE_ID")
    batch.add_argument(
        "--stdin",
        dest="ids_from_stdin",
        action="store_true",
        help="read image ids from stdin (e.g. piped from `image-service list`)",
    )
    batch.add_argument("--by-tag", help="every image with this tag, instead of ids")
    batch.add_argument("--tag", action="append", default=[], help="tag/untag: a tag (repeatable)")
    batch.add_argument("--focal", help="set_focal: X,Y from 0 to 1 (none: cleared)")
    batch.add_argument("--permanent", action="store_true", help="delete: for good")
    batch.set_defaults(func=cmd_batch, trailing="image_ids")

    trash = commands.add_parser(
        "trash", parents=[connection], help="list the trash (tab-separated), or --empty it"
    )
    trash.add_argument("--empty", action="store_true", help="delete everything in it for good")
    trash.set_defaults(func=cmd_trash)
    add_sharing_commands(commands, connection)
