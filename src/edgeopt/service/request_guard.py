"""Refuse NUL characters in a request's path and query string before any route sees them.

No id, name or parameter of this API can contain NUL, and PostgreSQL refuses NUL in text, so a ``%00`` in an id
would otherwise end as a database error (a 500) instead of the client's own 400. JSON bodies are checked by their
schemas (``edgeopt.service.schemas``), file names by the upload parser (``edgeopt.service.storage``).
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

NUL_MESSAGE = "The request's path or query contains a NUL character, which no id, name or parameter may contain."


def has_nul(scope: Scope) -> bool:
    path = scope.get("path", "")
    query = scope.get("query_string", b"")
    return "\x00" in path or b"\x00" in unquote_to_bytes(query.replace(b"+", b" "))


class RejectNulMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and has_nul(scope):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008, "reason": "NUL character in the request"})
                return
            await JSONResponse({"detail": NUL_MESSAGE, "field": None}, status_code=400)(scope, receive, send)
            return
        await self.app(scope, receive, send)
