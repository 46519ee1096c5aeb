"""Embedded AWS backends for `image-service dev`: moto's server on loopback, in this process."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# Fake credentials for the emulator. Set unconditionally so that dev can never reach real AWS.
_EMULATOR_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
_CLEARED = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_DYNAMODB")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def serialize_moto_transactions() -> None:
    """moto's TransactWriteItems deep-copies every table to roll back, while other threads of
    its server write them: concurrent transactions fail with "dictionary changed size during
    iteration" (a 500). One lock around them makes moto behave as DynamoDB does. Idempotent."""
    import threading

    from moto.dynamodb.models import DynamoDBBackend

    original = DynamoDBBackend.transact_write_items
    if getattr(original, "serialized", False):
        return
    lock = threading.Lock()

    def transact_write_items(self: DynamoDBBackend, transact_items: Any) -> Any:
        with lock:
            return original(self, transact_items)

    transact_write_items.serialized = True  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


@contextmanager
def moto_server(port: int | None = None, host: str = "127.0.0.1") -> Iterator[str]:
    """Runs moto's S3/DynamoDB/SQS server and points this process's AWS settings at it."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # moto is a dev extra, not a production dependency
        raise SystemExit("moto is not installed: pip install 'image-service[dev]'") from exc
    serialize_moto_transactions()
    port = port or free_port(host)
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    endpoint = f"http://{host}:{port}"
    for name in _CLEARED:
        os.environ.pop(name, None)
    os.environ.update(_EMULATOR_ENVIRONMENT)
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    try:
        yield endpoint
    finally:
        server.stop()
