"""``GET /api/health``: answers only when the database answers, so a load balancer sees a real failure."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import JSONResponse

from edgeopt import __version__
from edgeopt.service.deps import SessionDep
from edgeopt.service.schemas import HealthPublic

router = APIRouter(prefix="/api", tags=["health"])


@router.get("/health", response_model=HealthPublic, responses={503: {"model": HealthPublic}})
def health(session: SessionDep) -> HealthPublic | JSONResponse:
    try:
        session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        body = HealthPublic(status="unavailable", version=__version__, database="unreachable")
        return JSONResponse(body.model_dump(), status_code=503)
    return HealthPublic(status="ok", version=__version__, database="ok")
