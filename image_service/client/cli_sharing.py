"""`image-service albums | share | shares | api-key`: what an owner keeps beside their images,
from a shell (the client's ``SharingCalls``)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from image_service.client import shell
from image_service.client.api import ImageServiceClient


def cmd_api_key(args: argparse.Namespace) -> None:
    async def api_key(images: ImageServiceClient) -> int:
        if args.action == "create":
            if not args.name or not args.scope:
                print("api-key create needs --name and at least one --scope", file=sys.stderr)
                return 2
            expires = None if args.ttl is None else datetime.now(UTC) + args.ttl
            made = await images.create_api_key(args.name, args.scope, expires_at=expires)
            # The key is shown this once: on stdout alone, for a pipe into a secret store.
            print(made.key)
            print(f"made {made.key_id} ({', '.join(made.scopes)})", file=sys.stderr)
            return 0
        if args.action == "revoke":
            for key_id in args.key_ids:
                await images.revoke_api_key(key_id)
                print(f"revoked {key_id}")
            return 0
        for key in await images.api_keys():
            print(
                "\t".join(
                    (
                        key.key_id,
                        key.name,
                        ",".join(key.scopes),
                        _when(key.created_at),
                        _when(key.expires_at),
                        _when(key.last_used_at),
                    )
                )
            )
        return 0

    shell.run(args, api_key)


def cmd_albums(args: argparse.Namespace) -> None:
    async def albums(images: ImageServiceClient) -> int:
        action, rest = args.action, args.arguments
        if action == "create":
            if len(rest) != 1:
                print("albums create NAME", file=sys.stderr)
                return 2
            album = await images.create_album(rest[0], description=args.description or "")
            print(album.album_id)
            return 0
        if action == "list":
            for album in await images.albums():
                print(f"{album.album_id}\t{album.name}\t{_when(album.created_at)}")
            return 0
        if not rest:
            print(f"albums {action} ALBUM_ID ...", file=sys.stderr)
            return 2
        album_id, image_ids = rest[0], rest[1:]
        if action == "show":
            cursor = None
            while True:
                page = await images.album(album_id, limit=100, cursor=cursor)
                for image in page.images:
                    print(shell.row(image))
                cursor = page.next_cursor
                if cursor is None:
                    return 0
        if action == "delete":
            await images.delete_album(album_id)
            print(f"deleted album {album_id}")
            return 0
        change = images.add_to_album if action == "add" else images.remove_from_album
        failed = 0
        for start in range(0, len(image_ids), 100):
            results = await change(album_id, image_ids[start : start + 100])
            for image_id, outcome in results.items():
                print(f"{image_id}\t{outcome}")
                failed += outcome != "ok"
        return 1 if failed else 0

    shell.run(args, albums)


def cmd_share(args: argparse.Namespace) -> None:
    async def share(images: ImageServiceClient) -> int:
        targets = sum((bool(args.image), args.album is not None, args.tag is not None))
        if targets != 1:
            print("share one of: --image ID (repeatable), --album ID, --tag TAG", file=sys.stderr)
            return 2
        link = await images.create_share(
            image_ids=args.image,
            album_id=args.album,
            tag=args.tag,
            ttl_seconds=None if args.ttl is None else int(args.ttl.total_seconds()),
            password=args.password,
            allow_download=args.allow_download,
            max_views=args.max_views,
            presets=args.preset or None,
        )
        print(link.url)  # shown this once
        print(f"until {link.expires_at.isoformat()} ({link.share_id})", file=sys.stderr)
        return 0

    shell.run(args, share)


def cmd_shares(args: argparse.Namespace) -> None:
    async def shares(images: ImageServiceClient) -> int:
        if args.action == "revoke":
            for share_id in args.share_ids:
                await images.revoke_share(share_id)
                print(f"revoked {share_id}")
            return 0
        for link in await images.shares():
            target = link.album_id or link.tag or ",".join(link.image_ids)
            print("\t".join((link.share_id, target, _when(link.expires_at), str(link.views))))
        return 0

    shell.run(args, shares)


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.isoformat()


def _duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``: a key's life."""
    units = {"d": "days", "h": "hours", "m": "minutes"}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit() or int(number) < 1:
        raise argparse.ArgumentTypeError("a life such as 30d, 12h or 90m")
    return timedelta(**{units[unit]: int(number)})


def add_sharing_commands(commands: Any, connection: argparse.ArgumentParser) -> None:
    """Adds albums, share, shares and api-key to the `image-service` subcommands."""
    albums = commands.add_parser(
        "albums",
        parents=[connection],
        help="albums: create NAME, list, show ALBUM, add ALBUM IMAGE..., remove ALBUM IMAGE..., "
        "delete ALBUM",
    )
    albums.add_argument("action", choices=("create", "list", "show", "add", "remove", "delete"))
    albums.add_argument("arguments", nargs="*", metavar="ARG")
    albums.add_argument("--description", help="create: the album's description")
    albums.set_defaults(func=cmd_albums)

    share = commands.add_parser(
        "share", parents=[connection], help="make a share link; prints its URL (once)"
    )
    share.add_argument("--image", action="append", default=[], help="an image (repeatable)")
    share.add_argument("--album", help="an album")
    share.add_argument("--tag", help="every image with this tag")
    share.add_argument("--ttl", type=_duration, help="its life, as 7d, 12h or 90m (7d)")
    share.add_argument("--password", help="asked of every viewer")
    share.add_argument("--allow-download", action="store_true", help="serve originals too")
    share.add_argument("--max-views", type=int, help="it ends after this many views")
    share.add_argument("--preset", action="append", help="a rendition preset it serves")
    share.set_defaults(func=cmd_share)

    shares = commands.add_parser(
        "shares", parents=[connection], help="list your share links (tab-separated) or revoke"
    )
    shares.add_argument("action", choices=("list", "revoke"))
    shares.add_argument("share_ids", nargs="*", metavar="SHARE_ID")
    shares.set_defaults(func=cmd_shares)

    api_key = commands.add_parser(
        "api-key",
        parents=[connection],
        help="make (printing the key once), list (tab-separated) or revoke scoped API keys",
    )
    api_key.add_argument("action", choices=("create", "list", "revoke"))
    api_key.add_argument("key_ids", nargs="*", metavar="KEY_ID", help="revoke: the keys")
    api_key.add_argument("--name", help="create: what the key is for")
    api_key.add_argument(
        "--scope",
        action="append",
        choices=("images:read", "images:write", "images:delete", "shares:write", "albums:write"),
        help="create: a scope (repeatable)",
    )
    api_key.add_argument("--ttl", type=_duration, help="create: its life, as 30d, 12h or 90m")
    api_key.set_defaults(func=cmd_api_key)
