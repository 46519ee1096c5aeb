"""`image-service upload | list | download | delete`, run as real processes against the API."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from image_service.client.api import MULTIPART_THRESHOLD_BYTES
from image_service.client.cli import ProgressBar
from tests import images
from tests.integration.conftest import Api, MakeApi, token
from tests.processes import Program, run_command
from tests.throttle import throttled


async def _cli(
    api: Api, *args: str, user: str = "alice", cwd: Path | None = None
) -> tuple[int, str, str]:
    environment = api.child_environment(API_URL=api.url, API_TOKEN=token(user))
    return await run_command(*args, env=environment, cwd=cwd)


async def test_upload_sends_files_in_parallel_and_prints_their_ids(
    api: Api, tmp_path: Path
) -> None:
    files = {"a.jpg": images.jpeg(), "b.png": images.png(), "c.webp": images.webp()}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)

    code, out, err = await _cli(
        api,
        "upload",
        *files,
        "--tag",
        "cli",
        "--description",
        "from a shell",
        "--wait",
        cwd=tmp_path,
    )

    assert code == 0, err
    lines = [line.split("\t") for line in out.splitlines()]
    assert [(status, path) for _, status, path in lines] == [("ready", name) for name in files]
    client = api.images("alice")
    for image_id, _, path in lines:
        image = await client.get(image_id)
        assert (image.tags, image.description, image.filename) == (("cli",), "from a shell", path)
        assert await client.download(image_id) == files[path]


async def test_upload_reports_each_file_it_could_not_send_and_fails(
    api: Api, tmp_path: Path
) -> None:
    (tmp_path / "good.jpg").write_bytes(images.jpeg())
    (tmp_path / "page.html").write_bytes(images.HTML)

    code, out, err = await _cli(api, "upload", "good.jpg", "page.html", cwd=tmp_path)

    assert code == 1
    assert len(out.splitlines()) == 1
    assert out.endswith("\tprocessing\tgood.jpg\n")
    assert "page.html" in err
    assert "not a recognised image" in err


@pytest.mark.long
async def test_list_download_and_delete_work_on_the_callers_images_only(
    api: Api, tmp_path: Path
) -> None:
    data = images.noisy("JPEG")
    mine = await api.images("alice").upload(data, tags=["keep"], wait=True)
    theirs = await api.images("bob").upload(images.jpeg(), tags=["keep"])

    code, out, err = await _cli(api, "list", "--tag", "keep", "--json")
    assert code == 0, err
    assert [json.loads(line)["image_id"] for line in out.splitlines()] == [mine.image_id]

    code, out, err = await _cli(api, "download", mine.image_id, cwd=tmp_path)
    assert code == 0, err
    assert (tmp_path / f"{mine.image_id}.jpg").read_bytes() == data
    code, out, err = await _cli(
        api,
        "download",
        mine.image_id,
        "--variant",
        "thumb",
        "--format",
        "webp",
        "-o",
        "t.webp",
        cwd=tmp_path,
    )
    assert code == 0, err
    assert (tmp_path / "t.webp").read_bytes()[8:12] == b"WEBP"

    # A rendition of any allowed size, in the format asked for or the best the client takes.
    code, out, err = await _cli(
        api, "download", mine.image_id, "--width", "64", "--format", "avif", cwd=tmp_path
    )
    assert code == 0, err
    assert out.strip() == f"{mine.image_id}-64x0.avif"
    with Image.open(tmp_path / out.strip()) as rendition:
        assert (rendition.format, rendition.width) == ("AVIF", 64)
    code, out, err = await _cli(api, "download", mine.image_id, "--width", "65", cwd=tmp_path)
    assert code == 1
    assert "rendition_not_allowed" in err

    code, out, err = await _cli(api, "delete", mine.image_id, theirs.image_id)
    assert code == 1
    assert out == f"trashed {mine.image_id}\n"
    assert theirs.image_id in err
    assert "image_not_found" in err
    code, out, _ = await _cli(api, "list")
    assert out == ""
    assert (await api.images("bob").get(theirs.image_id)).image_id == theirs.image_id

    # The trash: listed, restored, trashed again and emptied; or a delete for good.
    code, out, _ = await _cli(api, "trash")
    assert (code, out.split("\t")[:2]) == (0, [mine.image_id, "trashed"])
    code, out, _ = await _cli(api, "restore", mine.image_id)
    assert (code, out) == (0, f"restored {mine.image_id}\n")
    assert (await _cli(api, "list"))[1].startswith(mine.image_id)
    await _cli(api, "delete", mine.image_id)
    code, out, _ = await _cli(api, "trash", "--empty")
    assert (code, out) == (0, "purged 1 images from the trash\n")
    code, out, _ = await _cli(api, "delete", "--permanent", theirs.image_id, user="bob")
    assert (code, out) == (0, f"deleted {theirs.image_id}\n")


async def test_the_client_commands_need_a_token(api: Api) -> None:
    code, _, err = await run_command("list", env=api.child_environment(API_URL=api.url))

    assert code != 0
    assert "IMAGE_SERVICE_API_TOKEN" in err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_counts_every_files_bytes_on_one_line() -> None:
    terminal = _Terminal()
    bar = ProgressBar(total_bytes=4_000_000, files=2, stream=terminal)

    bar.sent_bytes(0)(1_000_000, 2_000_000)
    bar.sent_bytes(1)(2_000_000, 2_000_000)
    bar.file_done()
    bar.sent_bytes(0)(2_000_000, 2_000_000)
    bar.file_done()
    bar.finish()

    frames = terminal.getvalue().split("\r")[1:]
    assert frames[0].startswith("[#######")
    assert "25%" in frames[0]
    assert "75%" in frames[1]
    assert frames[-1] == f"[{'#' * 30}] 100% 4.0/4.0 MB 2/2 files\n"


def test_the_progress_bar_is_silent_when_not_on_a_terminal() -> None:
    pipe = io.StringIO()
    bar = ProgressBar(total_bytes=10, files=1, stream=pipe)

    bar.sent_bytes(0)(10, 10)
    bar.finish()

    assert pipe.getvalue() == ""


# -- large files: in parts, resumable, de-duplicated -----------------------------------------------

RATE = 8 * 1024 * 1024  # bytes a second to S3: a 17 MB file takes about two seconds


async def test_a_killed_upload_of_a_large_file_resumes_where_it_stopped(
    make_api: MakeApi, moto_endpoint: str, tmp_path: Path
) -> None:
    data = images.noisy_png(2400, 2400)  # over the 16 MiB threshold: three parts of 8 MiB
    assert len(data) > MULTIPART_THRESHOLD_BYTES
    (tmp_path / "scan.png").write_bytes(data)
    async with throttled(moto_endpoint, bytes_per_second=RATE) as uplink:
        # Clients reach S3 through the slow uplink: the presigned URLs point at it.
        api = await make_api(s3_public_url=uplink.url)
        environment = api.child_environment(API_URL=api.url, API_TOKEN=token("alice"))
        environment["XDG_CACHE_HOME"] = str(tmp_path / "cache")
        command = ("upload", "scan.png", "--parts-at-once", "1", "--wait")

        first = await Program.start(*command, env=environment, cwd=tmp_path)
        states = tmp_path / "cache" / "image-service" / "uploads"
        async with asyncio.timeout(30):
            # Another process's file and S3's parts have no event to await: polled.
            while not list(states.glob("*.json")):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            image_id = json.loads(next(states.glob("*.json")).read_text())["image_id"]
            while not _parts_held(api, image_id):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await first.kill()  # one part of three is in S3
        assert len(_parts_held(api, image_id)) < 3

        # What the killed process left in its socket still drains through the uplink.
        sent_before = -1
        while sent_before != uplink.forwarded:
            sent_before = uplink.forwarded
            await asyncio.sleep(0.5)
        code, out, err = await run_command(*command, "--resume", env=environment, cwd=tmp_path)
        assert code == 0, err
        assert out.split("\t")[:2] == [image_id, "ready"]
        # Only what was missing went up again (the rest, and the requests' own bytes).
        assert uplink.forwarded - sent_before < len(data) - 8 * 1024 * 1024 + 64 * 1024
        assert await api.images("alice").download(image_id) == data
    assert not list(states.glob("*.json"))  # done: nothing left to resume


def _parts_held(api: Api, image_id: str) -> list[int]:
    uploads = api.s3.list_multipart_uploads(Bucket=api.settings.bucket).get("Uploads", [])
    for upload in uploads:
        if upload["Key"].endswith(image_id):
            listing = api.s3.list_parts(
                Bucket=api.settings.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
            return [part["PartNumber"] for part in listing.get("Parts", [])]
    return []


async def test_skip_existing_uploads_nothing_for_a_file_already_there(
    api: Api, tmp_path: Path
) -> None:
    (tmp_path / "a.jpg").write_bytes(images.jpeg())
    code, out, _ = await _cli(api, "upload", "a.jpg", cwd=tmp_path)
    assert code == 0
    image_id = out.split("\t")[0]
    code, again, err = await _cli(api, "upload", "a.jpg", "--skip-existing", cwd=tmp_path)
    assert code == 0, err
    assert again.split("\t")[0] == image_id
    assert f"already uploaded as {image_id}" in err
    page = await api.images("alice").list()
    assert [image.image_id for image in page.items] == [image_id]


async def test_api_keys_are_made_listed_used_and_revoked_from_the_shell(api: Api) -> None:
    code, out, err = await _cli(
        api, "api-key", "create", "--name", "ci", "--scope", "images:read", "--ttl", "30d"
    )
    assert code == 0, err
    key = out.strip()
    assert key.startswith("isk_")
    key_id = key[len("isk_") :].split("_", 1)[0]
    assert f"made {key_id} (images:read)" in err

    environment = api.child_environment(API_URL=api.url, API_TOKEN=key)
    code, out, err = await run_command("list", env=environment)
    assert code == 0, err  # the key reads
    code, _, err = await run_command(
        "delete", "0b5c8f3e-7d2a-4f61-9a1e-2c4b6d8e0f13", env=environment
    )
    assert code != 0
    assert "missing_scope" in err

    code, out, _ = await _cli(api, "api-key", "list")
    (row,) = [line.split("\t") for line in out.splitlines()]
    assert row[:3] == [key_id, "ci", "images:read"]
    assert key.rsplit("_", 1)[-1] not in out
    code, out, _ = await _cli(api, "api-key", "revoke", key_id)
    assert (code, out.strip()) == (0, f"revoked {key_id}")
    code, _, err = await run_command("list", env=environment)
    assert code != 0
    assert "invalid_token" in err


async def test_albums_are_made_filled_shown_and_deleted_from_the_shell(api: Api) -> None:
    first, _, _ = await api.upload(images.jpeg())
    second, _, _ = await api.upload(images.png(), content_type="image/png")
    code, out, err = await _cli(api, "albums", "create", "Trip", "--description", "by the sea")
    assert code == 0, err
    album_id = out.strip()
    code, out, _ = await _cli(
        api, "albums", "add", album_id, first["image_id"], second["image_id"], first["image_id"]
    )
    assert code == 0
    assert sorted(out.splitlines()) == sorted(
        [f"{first['image_id']}\tok", f"{second['image_id']}\tok"]
    )
    code, out, _ = await _cli(api, "albums", "show", album_id)
    assert [line.split("\t")[0] for line in out.splitlines()] == [
        second["image_id"],
        first["image_id"],
    ]
    code, out, _ = await _cli(
        api, "albums", "remove", album_id, "0b5c8f3e-7d2a-4f61-9a1e-2c4b6d8e0f13"
    )
    assert (code, out.split("\t")[1].strip()) == (1, "image_not_found")
    code, out, _ = await _cli(api, "albums", "delete", album_id)
    assert (code, out.strip()) == (0, f"deleted album {album_id}")
    assert (await api.call("GET", f"/albums/{album_id}"))[0] == 404


async def test_an_album_is_shared_from_the_shell_and_the_link_revoked(api: Api) -> None:
    upload, _, _ = await api.upload(images.jpeg())
    client = api.images("alice")
    album = await client.create_album("Shared")
    await client.add_to_album(album.album_id, [upload["image_id"]])
    code, out, err = await _cli(api, "share", "--album", album.album_id, "--ttl", "7d")
    assert code == 0, err
    url = out.strip()
    assert url.startswith(f"{api.url}/s/")
    async with api.http.get(url, headers={"Accept": "application/json"}) as shown:
        assert shown.status == 200
        assert [i["image_id"] for i in (await shown.json())["images"]] == [upload["image_id"]]
    code, out, _ = await _cli(api, "shares", "list")
    (row,) = [line.split("\t") for line in out.splitlines()]
    assert (row[1], row[3]) == (album.album_id, "1")
    code, out, _ = await _cli(api, "shares", "revoke", row[0])
    assert (code, out.strip()) == (0, f"revoked {row[0]}")
    async with api.http.get(url, headers={"Accept": "application/json"}) as gone:
        assert gone.status == 410
