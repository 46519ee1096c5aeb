"""The typed client installs alone: `pip install image-service` brings aiohttp and nothing of
the server (Pillow, boto, marshmallow, JWT...), and the client imports and runs with just that."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# What only the server needs: none of it may be imported by the client.
SERVER_ONLY = [
    "PIL", "aioboto3", "aiobotocore", "boto3", "botocore", "marshmallow", "webargs",
    "aiohttp_apispec", "apispec", "jwt", "prometheus_client", "orjson", "dotenv", "cachetools",
    "moto", "uvloop",
]  # fmt: skip

BLOCKER = """
import importlib.abc, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"the client imported {{name}}, a server dependency")
sys.meta_path.insert(0, Refuse())
import image_service.client, image_service.client.cli
from image_service.client import ImageServiceClient, ApiError
print("ok", ImageServiceClient.__name__)
"""


def test_the_package_depends_on_aiohttp_alone_and_the_server_is_an_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert [dependency.split(">")[0] for dependency in project["dependencies"]] == ["aiohttp"]
    server = " ".join(project["optional-dependencies"]["server"])
    assert all(name in server for name in ("pillow", "aioboto3", "marshmallow", "pyjwt"))


def test_the_client_imports_without_any_server_dependency() -> None:
    done = subprocess.run(
        [sys.executable, "-c", BLOCKER.format(blocked=set(SERVER_ONLY))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok ImageServiceClient"
