"""The FastAPI application factory: one app per ``Settings``, everything it needs hung on ``app.state``.

Tests build one app per database; ``edgeopt serve`` builds one from the environment. The job runner's lifespan
(``edgeopt.service.manager.lifespan``: channel broker and job manager) runs inside this app's lifespan.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi_offline import FastAPIOffline
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgeopt import __version__, isolated
from edgeopt.errors import InvalidInput
from edgeopt.service import manager, ws
from edgeopt.service.db.session import PoolLimits, make_engine, make_session_factory
from edgeopt.service.gate import RequestGate
from edgeopt.service.logging import RequestLogMiddleware, configure_logging
from edgeopt.service.request_guard import RejectNulMiddleware
from edgeopt.service.routes import agents, catalog, experiments, health, runs
from edgeopt.service.security import ApiKeyMiddleware
from edgeopt.service.storage import Storage
from edgeopt.settings import Settings, get_settings

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
# In a source checkout (`make run` installs the package editable), Vite builds the web app here.
CHECKOUT_STATIC_DIR = Path(__file__).resolve().parents[3] / "frontend" / "dist"
NOT_SPA_PREFIXES = ("api/", "ws/")
RETRY_AFTER_S = 2  # what a 503 for an exhausted connection pool tells the client to wait
GATE_RESERVE = 4  # connections kept back from the request gate for uploads' commits and the job runner's kick


def _lifespan() -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The process that checks uploads starts in the background, so the first upload does not wait for it.
        threading.Thread(target=isolated.start, name="edgeopt-isolated-start", daemon=True).start()
        report = app.state.storage.sweep(app.state.session_factory)
        if report.removed or report.dangling_rows:
            logger.info("start-up sweep", extra={"removed": report.removed, "dangling_rows": report.dangling_rows})
        try:
            async with manager.lifespan(app):
                yield
        finally:
            app.state.engine.dispose()

    return lifespan


def gate_limit(settings: Settings) -> int:
    """Requests with a session admitted at once: the pool's connections, less a reserve for the job runner's
    relays and the uploads' short transactions, which use connections without passing the gate."""
    reserve = settings.max_concurrent_experiments + GATE_RESERVE
    return max(1, settings.db_pool_size + settings.db_max_overflow - reserve)


def _busy() -> JSONResponse:
    return JSONResponse(
        {"detail": "The service is busy; retry in a few seconds.", "field": None},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def _is_sqlite_locked(exc: OperationalError) -> bool:
    return isinstance(exc.orig, sqlite3.OperationalError) and "locked" in str(exc.orig)


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InvalidInput)
    async def invalid_input(_: Request, exc: InvalidInput) -> JSONResponse:
        # A refusal sent before the body was read in full (413 on Content-Length, 408 on a stalled body) must end the
        # connection: the rest of the body would otherwise be read as the next request.
        headers = {"Connection": "close"} if exc.status_code in (408, 413) else None
        return JSONResponse({"detail": str(exc), "field": exc.field}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(PoolTimeout)
    async def pool_exhausted(request: Request, exc: PoolTimeout) -> JSONResponse:
        logger.warning("no database connection free", extra={"method": request.method, "path": request.url.path})
        return _busy()

    @app.exception_handler(OperationalError)
    async def database_error(request: Request, exc: OperationalError) -> JSONResponse:
        if _is_sqlite_locked(exc):  # SQLite's busy timeout ran out behind other writers: overload, not a bug
            logger.warning("database locked", extra={"method": request.method, "path": request.url.path})
            return _busy()
        return await unexpected(request, exc)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", extra={"method": request.method, "path": request.url.path})
        return JSONResponse({"detail": "Internal server error; see the service log.", "field": None}, 500)


def _mount_spa(app: FastAPI, static_dir: Path) -> None:
    """Serve the built web app at ``/``; unknown paths get ``index.html`` so client-side routes survive a reload."""
    root = static_dir.resolve()
    index = root / "index.html"

    @app.get("/{path:path}", include_in_schema=False)
    async def spa(path: str) -> FileResponse:
        if path.startswith(NOT_SPA_PREFIXES) or path in ("api", "ws"):
            raise StarletteHTTPException(status_code=404, detail="Not Found")
        candidate = (root / path).resolve()
        if path and candidate.is_relative_to(root) and candidate.is_file():
            return FileResponse(candidate)
        return FileResponse(index)


def find_static_dir() -> Path | None:
    """The built web app: bundled in the package (a wheel) or, in a source checkout, Vite's output folder."""
    for candidate in (STATIC_DIR, CHECKOUT_STATIC_DIR):
        if (candidate / "index.html").is_file():
            return candidate
    return None


def create_app(settings: Settings | None = None, *, static_dir: Path | None = None) -> FastAPI:
    """Build the service. ``static_dir`` overrides where the built web app is looked for (tests)."""
    settings = settings or get_settings()
    configure_logging()
    # Swagger UI (/docs) and ReDoc (/redoc) load their scripts from files shipped in fastapi-offline, not a CDN:
    # EdgeOpt is often run on a network without internet access.
    app = FastAPIOffline(
        title="EdgeOpt",
        version=__version__,
        summary="Fit a trained image classifier onto a Raspberry Pi.",
        docs_url="/docs",
        redoc_url="/redoc",
        lifespan=_lifespan(),
        generate_unique_id_function=lambda route: route.name,
    )
    pool = PoolLimits(settings.db_pool_size, settings.db_max_overflow, settings.db_pool_timeout_s)
    engine = make_engine(settings.resolved_database_url, pool)
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = make_session_factory(engine)
    app.state.storage = Storage(settings.storage_dir)
    for area in (settings.models_dir, settings.datasets_dir):
        area.mkdir(parents=True, exist_ok=True)

    _error_handlers(app)
    for router_module in (health, catalog, experiments, runs, agents, ws):
        app.include_router(router_module.router)
    app.include_router(agents.experiments_router)

    # Added innermost first: the access log sees every answer, CORS headers reach 401s, the key check runs last, and
    # only requests that passed it wait at the gate; NUL characters are refused before anything reads them.
    app.add_middleware(RejectNulMiddleware)
    app.add_middleware(RequestGate, limit=gate_limit(settings))
    if settings.api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["*"],
        allow_headers=["*"],
    )
    app.add_middleware(RequestLogMiddleware)

    static = static_dir or find_static_dir()
    if static is not None and (static / "index.html").is_file():
        _mount_spa(app, static)
    return app
