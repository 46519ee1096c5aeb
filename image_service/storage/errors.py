"""Turning botocore failures into domain errors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import aiohttp
from botocore.exceptions import BotoCoreError, ClientError

from image_service.domain.errors import BackendUnavailable, Unstorable

log = logging.getLogger(__name__)

# The backend a task was waiting on when it was cancelled (a request past its deadline), so that
# its 503 can name it. Set in the cancelled task's own context, read by whoever cancelled it.
_stalled_on: ContextVar[str | None] = ContextVar("stalled_on", default=None)


def stalled_backend() -> str | None:
    """The backend this task was waiting on when it was last cancelled, if any."""
    return _stalled_on.get()


# Refusals of the values in a request, not of the request's timing: a retry gets the same answer.
VALUE_REFUSALS = frozenset({"ValidationException", "SerializationException"})


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


@contextmanager
def backend_errors(backend: str) -> Iterator[None]:
    """Any failure of the backend not handled by the caller becomes a 503.

    Callers catch the ClientErrors that mean something to them (a missing key, a failed
    condition) inside this block; what reaches here is an outage, throttling, or a
    misconfiguration such as a missing table or denied access, and the client can only retry.
    """
    try:
        yield
    except asyncio.CancelledError:
        _stalled_on.set(backend)
        raise
    except ClientError as exc:
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message", "")
        if code in VALUE_REFUSALS:
            log.warning("%s refused a request's values: %s: %s", backend, code, message)
            raise Unstorable(backend, code) from exc
        log.warning("%s request failed: %s (HTTP %s)", backend, code, http_status(exc))
        raise BackendUnavailable(backend, code) from exc
    except (TimeoutError, BotoCoreError, aiohttp.ClientError) as exc:
        log.warning("%s unreachable: %s", backend, type(exc).__name__)
        raise BackendUnavailable(backend, type(exc).__name__) from exc
