"""What both tiers share: the test processes' grouping (pytest-xdist), an environment that no
developer's AWS_* or IMAGE_SERVICE_* leaks into, botocore's models read once, and the suite's
secrets. The server tier's fixtures (moto, LocalStack, the API over HTTP, Chromium) are in
tests/integration/conftest.py; the domain's unit tier's (the fakes) in tests/unit/domain/."""

from __future__ import annotations

import os
from collections.abc import Iterator

import botocore.loaders
import botocore.session
import pytest

JWT_SECRET = "test-secret-long-enough-for-every-hmac-algorithm-0123456789abcdef"
AWS_SECRET = "testing-secret"
REGION = "us-east-1"


@pytest.fixture(scope="session", autouse=True)
def botocore_data_is_read_once() -> Iterator[None]:
    """Every botocore session parses the service models (S3's alone is megabytes of JSON)
    into a loader of its own. The service opens one session per process, so it reads them
    once; the tests open several per test (the app, provisioning, the checks), and parsing
    them -- and collecting the garbage -- was over a third of the suite's time. One loader,
    whose cache botocore already shares between the clients of a session, serves them all."""
    loaders: dict[str | None, botocore.loaders.Loader] = {}

    def shared_loader(search_path_string: str | None = None) -> botocore.loaders.Loader:
        if search_path_string not in loaders:
            loaders[search_path_string] = botocore.loaders.create_loader(search_path_string)
        return loaders[search_path_string]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore.session, "create_loader", shared_loader)
        yield


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "long: one of the suite's longest tests, started first (tests/conftest.py)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`make test` runs the suite in parallel processes (pytest-xdist, `--dist loadgroup`), each
    with its own moto, handed one test at a time: the processes stay evenly loaded to the end.
    Only what tests share keeps them together: the modules on LocalStack run in one process (one
    LocalStack, which takes seconds and half a GB to start), and a module with a module-scoped
    fixture (a server, a large image) stays in one process, so the fixture is made once."""
    # The longest tests go first, so that none of them starts last and holds the run's end.
    items.sort(key=lambda item: item.get_closest_marker("long") is None)
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        fixtureinfo = getattr(item, "_fixtureinfo", None)
        definitions = fixtureinfo.name2fixturedefs.values() if fixtureinfo is not None else ()
        if "localstack_endpoint" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("localstack"))
        elif any(definition.scope == "module" for defs in definitions for definition in defs):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.partition("::")[0]))


@pytest.fixture(autouse=True)
def no_ambient_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets: no AWS_* or IMAGE_SERVICE_* of the developer's leaks into it."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "IMAGE_SERVICE_")):
            monkeypatch.delenv(name)
