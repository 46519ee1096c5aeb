"""Where `image-service upload` keeps what it needs to resume a multipart upload: one small
JSON file per file being uploaded (its image id, size and modification time), under the user's
cache directory, removed once the upload is complete."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


def state_directory() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "image-service" / "uploads"


@dataclass(frozen=True, slots=True)
class UploadState:
    api_url: str
    path: str  # absolute
    size: int
    mtime_ns: int
    image_id: str

    @classmethod
    def of(cls, api_url: str, path: Path, image_id: str) -> UploadState:
        stat = path.stat()
        return cls(api_url, str(path.resolve()), stat.st_size, stat.st_mtime_ns, image_id)


def _state_file(api_url: str, path: Path) -> Path:
    # One per (service, file): the same file sent to two services resumes each on its own.
    name = hashlib.sha256(f"{api_url}\n{path.resolve()}".encode()).hexdigest()[:32]
    return state_directory() / f"{name}.json"


def load(api_url: str, path: Path) -> UploadState | None:
    """The interrupted upload of this file to this service, if the file is unchanged since."""
    try:
        state = UploadState(**json.loads(_state_file(api_url, path).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    stat = path.stat()
    if (state.size, state.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
        return None  # the file changed: its parts on S3 are not this file's any more
    return state


def save(state: UploadState) -> None:
    target = _state_file(state.api_url, Path(state.path))
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(state)))
    temporary.replace(target)  # whole or not at all, even if the process dies here


def forget(api_url: str, path: Path) -> None:
    _state_file(api_url, path).unlink(missing_ok=True)
