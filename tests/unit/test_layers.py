"""The rooms of the code and what each may import (docs/architecture.md, "The rooms of the
code"), read from the source itself: an import that runs the wrong way fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "image_service"

# What a room may import from the service (beyond itself); anything else of the service is out.
ALLOWED: dict[str, set[str]] = {
    "domain": {"imaging"},
    "imaging": set(),
    # The settings' values check content types and part sizes against the domain's limits.
    "settings": {"domain", "imaging"},
    "storage": {"domain", "imaging", "settings", "tracing", "logs", "metrics"},
    "auth": {"domain"},
    # The formats' magic numbers (imaging/formats.py, no Pillow: tests/unit/test_client_alone.py);
    # the load test mints its users' tokens (auth).
    "client": {"imaging", "auth"},
    "web": {"domain", "auth", "storage", "imaging", "settings", "logs", "metrics", "tracing"},
    # The webhooks' signature: one implementation for the sender and its receivers (client).
    "worker": {"domain", "storage", "imaging", "settings", "logs", "metrics", "tracing", "client"},
    "ops": {"domain", "storage", "imaging", "settings", "logs"},
}


def _imports(path: Path) -> set[str]:
    """The service's rooms this file imports: ``image_service.<room>...``, at any depth."""
    rooms: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "image_service" and len(parts) > 1:
                rooms.add(parts[1])
    return rooms


def _room_files(room: str) -> list[Path]:
    return sorted((PACKAGE / room).rglob("*.py"))


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_each_room_imports_only_the_rooms_below_it(room: str) -> None:
    wrong = {
        str(path.relative_to(PACKAGE)): sorted(_imports(path) - ALLOWED[room] - {room})
        for path in _room_files(room)
    }
    assert {path: rooms for path, rooms in wrong.items() if rooms} == {}


def test_the_domain_knows_no_aiohttp_botocore_or_aws() -> None:
    third_party = {"aiohttp", "aioboto3", "aiobotocore", "botocore", "boto3", "marshmallow"}
    found = {}
    for path in _room_files("domain"):
        tree = ast.parse(path.read_text())
        names = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            node.module.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
        }
        if names & third_party:
            found[path.name] = sorted(names & third_party)
    assert found == {}


def test_nothing_below_the_programs_imports_them() -> None:
    upward = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "programs" in _imports(path)
        and path.parent.name != "programs"
        and path.name != "__main__.py"
    ]
    assert upward == []


def test_the_layers_name_every_room() -> None:
    rooms = {path.name for path in PACKAGE.iterdir() if path.is_dir() and path.name[0] != "_"}
    assert rooms == set(ALLOWED) | {"programs"}
