"""Structured logs: one JSON object per line, and one access line per HTTP request.

JSON lines are what log collectors parse without regexes; the access line carries method, path, status and
duration so a slow or failing endpoint is found by filtering, not by reading.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

ACCESS_LOGGER = "edgeopt.access"
# uvicorn logs each WebSocket with its query string ('"WebSocket /ws/...?api_key=..." [accepted]'), and its access
# log (when enabled) each HTTP request line: the API key a browser socket sends in its URL must not reach a log.
SERVER_LOGGERS = ("uvicorn.error", "uvicorn.access", "uvicorn")
SECRET_QUERY = re.compile(r"(?i)(api_key=)[^&\s\"']*")
REDACTED = "[redacted]"
_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """A record as one JSON line; fields passed with ``extra=`` become top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        body.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS and not k.startswith("_")})
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(body, default=str))


def redact(text: str) -> str:
    """``text`` with the value of every ``api_key=`` query parameter replaced."""
    return SECRET_QUERY.sub(rf"\g<1>{REDACTED}", text)


class RedactSecrets(logging.Filter):
    """Rewrites a record's format string and arguments so no ``api_key=`` value survives.

    The arguments are redacted one by one rather than merged into the message: uvicorn's access formatter unpacks
    them by position.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


def configure_logging(level: int = logging.INFO) -> None:
    """Send the ``edgeopt`` loggers to stderr as JSON lines and redact secrets in the server's own log lines.

    Idempotent, and leaves other handlers alone.
    """
    for name in SERVER_LOGGERS:
        server_logger = logging.getLogger(name)
        if not any(isinstance(existing, RedactSecrets) for existing in server_logger.filters):
            server_logger.addFilter(RedactSecrets())
    root = logging.getLogger("edgeopt")
    root.setLevel(level)
    if not any(getattr(handler, "_edgeopt_json", False) for handler in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._edgeopt_json = True  # type: ignore[attr-defined]
        root.addHandler(handler)


class RequestLogMiddleware:
    """Logs every HTTP request once it has answered (or failed): method, path, status, duration_ms."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.logger = logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            self.logger.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
