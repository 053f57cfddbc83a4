"""``GET /api/catalog``: the capability manifest the web app's dropdowns, statuses and limits come from."""

from __future__ import annotations

from fastapi import APIRouter

from edgeopt.service.schemas import CatalogPublic

router = APIRouter(prefix="/api", tags=["catalog"])


@router.get("/catalog")
def get_catalog() -> CatalogPublic:
    return CatalogPublic.build()
