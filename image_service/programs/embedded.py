"""Embedded AWS backends for `image-service dev`: moto's server on loopback, in this process."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
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


def patch_moto_transactions() -> None:
    """Three repairs to moto's TransactWriteItems, as DynamoDB behaves. Idempotent.

    - moto backs up every table a transaction touches with a deep copy, to roll back on
      failure: its cost grows with the table (tens of milliseconds at a few thousand items,
      which a soak or a benchmark reaches in minutes). Here only the items the transaction
      names are backed up and put back.
    - Its other threads write the tables meanwhile, so concurrent transactions failed with
      "dictionary changed size during iteration" (a 500). One lock around them makes moto
      behave as DynamoDB does.
    - DynamoDB keeps a transaction's ``ClientRequestToken`` (which botocore fills on every
      call) for ten minutes: a retry of a committed transaction, whose answer was lost,
      succeeds without being applied again. moto ignores the token, so such a retry failed
      its own conditions (_IdempotentTransactions).
    """
    import copy
    import threading

    from moto.dynamodb import models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoDBBackend.transact_write_items
    if getattr(original, "patched", False):
        return
    lock = threading.Lock()

    def transact_write_items(self: DynamoDBBackend, transact_items: Any) -> Any:
        with lock:
            backup = _backup_items(self, transact_items)
            try:
                return original(self, transact_items)
            except Exception:
                for table, hash_key, range_key, item in backup:
                    _put_back(table, hash_key, range_key, item)
                raise

    transact_write_items.patched = True  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    DynamoHandler.transact_write_items = _IdempotentTransactions(  # type: ignore[method-assign,assignment]  # a descriptor
        DynamoHandler.transact_write_items
    )
    # The module's own deep copy of a whole Table becomes the table itself (the items it
    # names are backed up above); every other deep copy in it stays a real one.
    models.copy = _NoTableCopies(copy, Table)  # type: ignore[attr-defined,assignment]  # a stand-in


class _IdempotentTransactions:
    """moto's TransactWriteItems handler, answering a token it has seen in the last ten
    minutes as DynamoDB does: the first answer again for the same request, a refusal
    (IdempotentParameterMismatchException) for another."""

    KEPT_SECONDS = 600

    def __init__(self, handler: Any) -> None:
        import threading

        self._handler = handler
        self._seen: dict[str, tuple[str, float, Any]] = {}
        self._lock = threading.Lock()

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        return lambda: self(instance)

    def __call__(self, handler: Any) -> Any:
        import json
        import time

        from moto.dynamodb.exceptions import DynamodbException

        token = handler.body.get("ClientRequestToken")
        if token is None:
            return self._handler(handler)
        request = json.dumps(handler.body["TransactItems"], sort_keys=True)
        with self._lock:  # one transaction at a time, as the backend applies them anyway
            now = time.monotonic()
            for old in [t for t, (_, at, _) in self._seen.items() if now - at > self.KEPT_SECONDS]:
                del self._seen[old]
            seen = self._seen.get(token)
            if seen is not None:
                if seen[0] != request:
                    raise DynamodbException(
                        "com.amazonaws.dynamodb.v20120810#IdempotentParameterMismatchException",
                        "The request uses the same client token as a previous, but non-identical"
                        " request.",
                    )
                return seen[2]
            answer = self._handler(handler)
            self._seen[token] = (request, now, answer)
            return answer


class _NoTableCopies:
    def __init__(self, copy_module: Any, table_type: type) -> None:
        self._copy = copy_module
        self._table_type = table_type

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        if isinstance(value, self._table_type):
            return value
        return self._copy.deepcopy(value, memo)


def _backup_items(backend: Any, transact_items: Any) -> list[tuple[Any, Any, Any, Any]]:
    import copy

    backup = []
    for entry in transact_items:
        _, operation = next(iter(entry.items()))
        table = backend.tables.get(operation.get("TableName"))
        if table is None:
            continue
        key = operation.get("Key")
        if key is None and "Item" in operation:
            attributes = operation["Item"]
            names = [table.hash_key_attr, table.range_key_attr]
            key = {name: attributes[name] for name in names if name and name in attributes}
        try:
            hash_key, range_key = backend.get_keys_value(table, key)
        except (KeyError, TypeError, ValueError):  # malformed: moto writes nothing for it
            continue
        item = table.get_item(hash_key, range_key)
        backup.append((table, hash_key, range_key, copy.deepcopy(item)))
    return backup


def _put_back(table: Any, hash_key: Any, range_key: Any, item: Any) -> None:
    if item is None:
        table.delete_item(hash_key, range_key)
    elif range_key is None:
        table.items[hash_key] = item
    else:
        table.items[hash_key][range_key] = item


def sample_photo(folder: Path) -> Path:
    """A 1 MP JPEG for dev's printed example to upload: a smooth gradient with a circle, so
    that its variants show something."""
    from PIL import Image, ImageDraw

    width, height = 1200, 800
    gradient = Image.linear_gradient("L").resize((width, height))
    photo = Image.merge("RGB", (gradient, gradient.rotate(90).resize((width, height)), gradient))
    ImageDraw.Draw(photo).ellipse((400, 200, 800, 600), fill=(230, 120, 40))
    path = folder / "sample.jpg"
    photo.save(path, "JPEG", quality=85)
    return path


@contextmanager
def moto_server(port: int | None = None, host: str = "127.0.0.1") -> Iterator[str]:
    """Runs moto's S3/DynamoDB/SQS server and points this process's AWS settings at it."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # moto is a dev extra, not a production dependency
        raise SystemExit("moto is not installed: pip install 'image-service[dev]'") from exc
    patch_moto_transactions()
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
