"""Logging for operators: one JSON object per line (the default) or plain text, on stderr.

Every request leaves exactly one line on the ``image_service.access`` logger (see
:func:`log_request`); its fields are top-level keys of the JSON object, so a log pipeline can
filter on ``status`` or ``route`` without parsing a message.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from image_service import tracing

ACCESS_LOGGER = "image_service.access"
# Attributes every LogRecord has; anything else on a record came in through `extra`.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# Their INFO lines (credential discovery, the emulator's own access log) are noise here.
_CHATTY_LOGGERS = ("botocore", "aiobotocore", "werkzeug", "aiohttp.access")

access_log = logging.getLogger(ACCESS_LOGGER)


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...extra fields, "exception"?}`` per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD_ATTRIBUTES:
                entry[name] = value
        entry.update(tracing.log_fields())  # the span this line was written in, if traced
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        try:
            return orjson.dumps(entry, default=str).decode()
        except (TypeError, orjson.JSONEncodeError):  # a lone surrogate a client sent, say
            return json.dumps(entry, default=str, ensure_ascii=True)


class MalformedHttpFilter(logging.Filter):
    """aiohttp answers a request it cannot parse (a request line or header over its limits,
    broken framing) with a 400 itself, and logs it as an ERROR with a traceback. That is a
    client's mistake, not the service's: one WARNING line, with what was wrong."""

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError) and 400 <= error.code < 500:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg = f"{record.msg}: malformed HTTP (%s): %s"
            args = record.args if isinstance(record.args, tuple) else ()
            record.args = (*args, error.code, str(error.message)[:200])
            record.exc_info = None
        return True


def configure_logging(level: str, log_format: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for chatty in _CHATTY_LOGGERS:
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedHttpFilter) for f in server.filters):
        server.addFilter(MalformedHttpFilter())


def image_event(event: str, user_id: str, image_id: str) -> dict[str, str]:
    """``extra`` for a log line about one image: keys of their own in the JSON object, for a
    log pipeline to filter on (``event`` says what happened)."""
    return {"event": event, "user": user_id, "image_id": image_id}


def log_request(
    *,
    request_id: str,
    method: str,
    route: str,
    path: str,
    status: int,
    duration: float,
    user: str | None,
    remote: str | None,
) -> None:
    """The one line a request leaves. The path is logged as sent (it holds no secret: tokens
    travel in a header), but a share link's, which is its token, is logged as its route
    (web/middlewares.py); the query string is not, since it may carry a cursor or a user id."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    duration_ms = round(duration * 1000, 2)
    access_log.info(
        "%s %s %s %.1fms",
        method,
        path,
        status,
        duration_ms,
        extra={
            "request_id": request_id,
            "method": method,
            "route": route,
            "path": path,
            "status": status,
            "duration_ms": duration_ms,
            "user": user,
            "remote": remote,
        },
    )
