"""moto's server for benchmarks, with one speed-up that changes no answer.

moto orders a query's results by sorting the whole partition on every request, comparing
attribute values through `DynamoType.cast_value`, which tests five other types before it returns
a string as it is. With tens of thousands of items that is seconds per query, past the service's
read timeout. Strings, binaries and booleans are returned first here; every other type goes the
original way, so every comparison, and so every result, is the same.

    .venv/bin/python -m bench.moto_server -H 127.0.0.1 -p PORT
"""

from __future__ import annotations

from typing import Any

from moto.dynamodb.models.dynamo_type import DynamoType
from moto.server import main

from image_service.embedded import patch_moto_transactions

_UNCHANGED_TYPES = frozenset({"S", "B", "BOOL"})
_original_cast = DynamoType.cast_value.fget  # type: ignore[attr-defined]


def _cast_value(self: DynamoType) -> Any:
    if self.type in _UNCHANGED_TYPES:
        return self.value
    return _original_cast(self)


DynamoType.cast_value = property(_cast_value)  # type: ignore[assignment,method-assign]
patch_moto_transactions()

if __name__ == "__main__":
    main()
