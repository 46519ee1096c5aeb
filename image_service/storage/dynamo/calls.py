"""How the table's modules call DynamoDB: one operation at a time, in the API's own JSON shape.

Two transports answer to it. The default is the app's aiobotocore client: botocore's retries,
its idempotency token on every ``TransactWriteItems``, its user agent and its event hooks (which
tracing, X-Ray and botocore's ``Stubber`` rely on) all apply. ``wire.py`` speaks the same JSON
directly, an opt-in (``IMAGE_SERVICE_AWS_TRANSPORT=direct``) that saves CPU per call and is held
to the same tests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from botocore import xform_name
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

# (operation, parsed answer or error response), after each call's last attempt.
CallObserver = Callable[[str, Mapping[str, Any]], None]


class TableCalls(Protocol):
    def observe(self, observer: CallObserver) -> None:
        """``observer`` hears of every call once, however many attempts it took."""

    async def call(self, operation: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """The answer to one operation (``GetItem``, ``Query``...); a refusal raises
        botocore's ``ClientError``."""


class BotocoreTableCalls:
    """DynamoDB through the app's aiobotocore client: every call is botocore's own."""

    def __init__(self, client: DynamoDBClient) -> None:
        self._client = client
        self._methods: dict[str, Callable[..., Any]] = {}
        self._observers: list[CallObserver] = []

    def observe(self, observer: CallObserver) -> None:
        self._observers.append(observer)

    async def call(self, operation: str, request: Mapping[str, Any]) -> dict[str, Any]:
        method = self._methods.get(operation)
        if method is None:
            method = self._methods[operation] = getattr(self._client, xform_name(operation))
        try:
            answer: dict[str, Any] = await method(**request)
        except ClientError as refused:
            self._tell(operation, refused.response)
            raise
        self._tell(operation, answer)
        return answer

    def _tell(self, operation: str, outcome: Mapping[str, Any]) -> None:
        for observer in self._observers:
            observer(operation, outcome)
