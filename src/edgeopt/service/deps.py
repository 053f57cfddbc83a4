"""Dependency aliases so route signatures stay short (``session: SessionDep``).

Everything comes from ``app.state``, set once by ``create_app``: tests build an app per database and never patch
module globals.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from edgeopt.service.storage import Storage
from edgeopt.settings import Settings


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_storage(request: Request) -> Storage:
    return request.app.state.storage


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.session_factory() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
StorageDep = Annotated[Storage, Depends(get_storage)]
# scope="function": the session (and its pooled connection) is closed as soon as the route returns, not after the
# response has been sent; otherwise every finished request queued for a worker thread would keep a connection, and
# a burst of clients larger than the pool would exhaust it.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
