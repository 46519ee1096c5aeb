"""moto's server for benchmarks, with one speed-up that changes no answer.

moto orders a query's results by sorting the whole partition on every request, comparing
attribute values through `DynamoType.cast_value`, which tests five other types before it returns
a string as it is. With tens of thousands of items that is seconds per query, past the service's
read timeout. Strings, binaries and booleans are returned first here; every other type goes the
original way, so every comparison, and so every result, is the same.

And one change of transport, with `--keep-alive`: moto's own server (werkzeug's) answers every
request with `Connection: close`, so each AWS call a client makes opens a TCP connection, about a
third of the CPU of a one-call request on this machine, for the service and the baseline alike.
AWS keeps connections alive. With `--keep-alive` the same moto application is served by waitress,
which does too (HTTP/1.1, 64 threads); bench/api.py measures both ways.

    .venv/bin/python -m bench.moto_server -H 127.0.0.1 -p PORT [--keep-alive]
"""

from __future__ import annotations

import sys
from typing import Any

from moto.dynamodb.models.dynamo_type import DynamoType
from moto.server import DomainDispatcherApplication, create_backend_app, main

from image_service.programs.embedded import patch_moto_transactions

_UNCHANGED_TYPES = frozenset({"S", "B", "BOOL"})
_original_cast = DynamoType.cast_value.fget  # type: ignore[attr-defined]


def _cast_value(self: DynamoType) -> Any:
    if self.type in _UNCHANGED_TYPES:
        return self.value
    return _original_cast(self)


DynamoType.cast_value = property(_cast_value)  # type: ignore[assignment,method-assign]
patch_moto_transactions()


def serve_keeping_connections_alive(host: str, port: int) -> None:
    import waitress  # the bench extra's

    app = DomainDispatcherApplication(create_backend_app)
    # Connections: every pool of every client, the service's and the baseline's (100 by default).
    waitress.serve(
        app, host=host, port=port, threads=64, connection_limit=1000, ident="moto", _quiet=True
    )


if __name__ == "__main__":
    if "--keep-alive" in sys.argv:
        arguments = sys.argv[1:]
        host = arguments[arguments.index("-H") + 1]
        port = int(arguments[arguments.index("-p") + 1])
        serve_keeping_connections_alive(host, port)
    else:
        main()
