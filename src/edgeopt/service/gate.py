"""A gate in front of the routes that use a database session: at most N of them run at once, the rest wait.

Why a gate and not only a bigger pool: a synchronous route keeps its session's connection from its first query until
its response has been serialised, and FastAPI serialises in a worker thread; under a burst of clients larger than
the thread pool, finished requests queue for a thread while each still holds a connection, so any pool can be
exhausted and answer 503. Admitting no more requests than the pool has connections (less a reserve for the job
runner and the upload transactions, which do not pass the gate) turns a burst into a short queue in the event
loop, which costs nothing, instead of errors.

Streaming routes are not gated: an upload holds no connection while its body streams (it opens short sessions of its
own), and a download has closed its session before the file is sent; a slow or stalled client must not hold a slot.
"""

from __future__ import annotations

import re

import anyio
from starlette.types import ASGIApp, Receive, Scope, Send

UNGATED = re.compile(r"^/api/experiments/[^/]+/(upload|dataset|runs/[^/]+/download)$")


class RequestGate:
    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit
        self._slots: anyio.Semaphore | None = None  # made on first use, inside the server's event loop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/api/") or UNGATED.match(path):
            await self.app(scope, receive, send)
            return
        if self._slots is None:
            self._slots = anyio.Semaphore(self.limit)
        async with self._slots:
            await self.app(scope, receive, send)
