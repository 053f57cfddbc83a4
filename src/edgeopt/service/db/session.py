"""Engines and sessions from one database URL, with the per-backend settings each needs.

SQLite serves the API threads, the job runner and its worker processes at once: it gets ``check_same_thread``
off, WAL journaling (readers never block the writer), a busy timeout, and foreign keys switched on (SQLite
ignores ``ON DELETE CASCADE`` without it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_S = 30


def _sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


@dataclass(frozen=True)
class PoolLimits:
    """How many connections an engine may hold, and how long a request waits for one before giving up.

    The defaults cover FastAPI's thread pool (40 threads run the synchronous routes) so a burst of requests waits
    for a thread rather than for a connection; past ``timeout_s`` SQLAlchemy raises ``TimeoutError``, which the app
    answers with 503 and ``Retry-After``.
    """

    size: int = 10
    max_overflow: int = 30
    timeout_s: float = 5.0


def make_engine(database_url: str, pool: PoolLimits | None = None) -> Engine:
    """An engine for ``database_url``; a SQLite file's folder is created so a fresh storage dir just works."""
    pool = pool or PoolLimits()
    parsed = make_url(database_url)
    sizing: dict[str, Any] = {
        "pool_size": pool.size,
        "max_overflow": pool.max_overflow,
        "pool_timeout": pool.timeout_s,
    }
    if parsed.get_backend_name() == "sqlite":
        sqlite_file = _sqlite_file(database_url)
        if sqlite_file is not None:
            sqlite_file.parent.mkdir(parents=True, exist_ok=True)
        else:
            sizing = {}  # an in-memory database gets SQLAlchemy's single-connection pool, which takes no sizing
        engine = create_engine(
            parsed, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S}, **sizing
        )
        event.listen(engine, "connect", _set_sqlite_pragmas)
        return engine
    return create_engine(parsed, pool_pre_ping=True, **sizing)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    # expire_on_commit=False: objects returned by a route stay readable after the commit that saved them.
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error; for code outside a request."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
