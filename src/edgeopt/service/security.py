"""The optional API key: when ``EDGEOPT_API_KEY`` is set, every ``/api`` request and every ``/ws`` socket carries it.

It is enforced by an ASGI middleware rather than a per-router dependency so that a router added later (runs,
WebSocket) cannot forget it, and unknown ``/api`` paths answer 401 before 404 (no probing without the key). The
web app's static files stay open: the browser must load the page that asks for the key.
"""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers, QueryParams
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from edgeopt.settings import Settings

HEADER = "X-API-Key"
QUERY_PARAM = "api_key"
PROTECTED_PREFIXES = ("/api", "/ws")
WEBSOCKET_POLICY_VIOLATION = 1008


def key_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison, so response timing does not leak how much of a guess was right."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def check_websocket_key(websocket: WebSocket, settings: Settings) -> bool:
    """True when no key is configured or the socket sent it (``?api_key=`` or the header, for non-browser clients)."""
    if not settings.api_key:
        return True
    given = websocket.query_params.get(QUERY_PARAM) or websocket.headers.get(HEADER)
    return key_matches(given, settings.api_key)


def _is_protected(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in PROTECTED_PREFIXES)


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not _is_protected(scope["path"]):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http":
            if scope["method"] == "OPTIONS" or key_matches(Headers(scope=scope).get(HEADER), self.api_key):
                await self.app(scope, receive, send)  # CORS pre-flights never carry custom headers
                return
            response = JSONResponse({"detail": f"Missing or wrong API key: send it in the {HEADER} header."}, 401)
            await response(scope, receive, send)
            return
        params = QueryParams(scope.get("query_string", b""))
        given = params.get(QUERY_PARAM) or Headers(scope=scope).get(HEADER)
        if key_matches(given, self.api_key):
            await self.app(scope, receive, send)
            return
        websocket = WebSocket(scope, receive, send)
        if "websocket.http.response" in scope.get("extensions", {}):
            denial = JSONResponse({"detail": f"Missing or wrong API key: add ?{QUERY_PARAM}=... to the URL."}, 401)
            await websocket.send_denial_response(denial)
        else:
            await websocket.close(code=WEBSOCKET_POLICY_VIOLATION, reason="Missing or wrong API key.")
