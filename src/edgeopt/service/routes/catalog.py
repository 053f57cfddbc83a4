"""``GET /api/catalog``: the capability manifest the web app's dropdowns are built from."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from edgeopt import catalog

router = APIRouter(prefix="/api", tags=["catalog"])


@router.get("/catalog")
def get_catalog() -> dict[str, Any]:
    return catalog.as_dict()
