"""The app around the routes: health, catalog, OpenAPI docs, request log lines, CORS, the web app's static files."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from edgeopt import catalog
from edgeopt.service.app import create_app
from edgeopt.settings import Settings


def test_health_checks_the_database(client: TestClient) -> None:
    response = client.get("/api/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok" and response.json()["database"] == "ok"


def test_health_reports_an_unreachable_database(settings: Settings) -> None:
    broken = settings.model_copy(update={"database_url": "postgresql+psycopg://nobody@127.0.0.1:1/none"})
    client = TestClient(create_app(broken))  # no lifespan: the start-up sweep would fail first, loudly
    response = client.get("/api/health")
    assert response.status_code == 503
    assert response.json()["database"] == "unreachable"


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_api_docs_load_nothing_from_outside(client: TestClient, page: str) -> None:
    """Swagger UI and ReDoc work on a machine without internet: every script and style comes from this server."""
    html = client.get(page).text
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html) + re.findall(r"""url: ?["']([^"']+)["']""", html)
    assert assets, html
    for asset in assets:
        assert asset.startswith("/"), f"{page} loads {asset} from outside the service"
        assert client.get(asset).status_code == 200, asset


def test_catalog_is_the_manifest(client: TestClient) -> None:
    body = client.get("/api/catalog").json()
    assert {k: v for k, v in body.items() if k not in ("statuses", "limits")} == json.loads(
        json.dumps(catalog.as_dict())
    )
    assert [t["name"] for t in body["techniques"]] == list(catalog.TECHNIQUE_NAMES)


def test_openapi_docs_describe_the_upload_body(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    upload = schema["paths"]["/api/experiments/{experiment_id}/upload"]["post"]
    multipart = upload["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert multipart["properties"]["file"]["format"] == "binary"
    assert {"/api/experiments", "/api/experiments/create", "/api/health", "/api/catalog"} <= set(schema["paths"])
    assert schema["components"]["schemas"]["ExperimentCreate"]["properties"]["device"]["enum"] == list(
        catalog.DEVICE_NAMES
    )


def test_one_json_log_line_per_request(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="edgeopt.access"):
        client.get("/api/experiments/missing")
        client.get("/api/health")
    records = [r for r in caplog.records if r.name == "edgeopt.access"]
    assert [(r.method, r.path, r.status) for r in records] == [  # type: ignore[attr-defined]
        ("GET", "/api/experiments/missing", 404),
        ("GET", "/api/health", 200),
    ]
    assert all(isinstance(r.duration_ms, float) and r.duration_ms >= 0 for r in records)  # type: ignore[attr-defined]
    from edgeopt.service.logging import JsonFormatter

    line = json.loads(JsonFormatter().format(records[0]))
    assert {"method": "GET", "path": "/api/experiments/missing", "status": 404}.items() <= line.items()
    assert "duration_ms" in line and "\n" not in JsonFormatter().format(records[0])


def test_cors_allows_only_configured_origins(client: TestClient, settings: Settings) -> None:
    allowed = settings.cors_origins[0]
    ok = client.options("/api/experiments", headers={"Origin": allowed, "Access-Control-Request-Method": "POST"})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == allowed
    refused = client.get("/api/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in refused.headers


@pytest.fixture
def spa_client(settings: Settings, tmp_path: Path) -> Iterator[TestClient]:
    static = tmp_path / "static"
    (static / "assets").mkdir(parents=True)
    (static / "index.html").write_text("<html>EdgeOpt app</html>")
    (static / "assets" / "app.js").write_text("console.log('app')")
    (tmp_path / "secret.txt").write_text("outside the static dir")
    with TestClient(create_app(settings, static_dir=static)) as client:
        yield client


def test_spa_serves_files_and_falls_back_to_index(spa_client: TestClient) -> None:
    assert spa_client.get("/").text == "<html>EdgeOpt app</html>"
    assert spa_client.get("/assets/app.js").text == "console.log('app')"
    assert spa_client.get("/experiments/abc/results").text == "<html>EdgeOpt app</html>"  # client-side route
    assert spa_client.get("/..%2fsecret.txt").text == "<html>EdgeOpt app</html>"


@pytest.mark.parametrize("path", ["/api/nothing-here", "/ws/nothing", "/api"])
def test_spa_fallback_never_hides_api_404s(spa_client: TestClient, path: str) -> None:
    response = spa_client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")


def test_api_still_served_with_spa(spa_client: TestClient) -> None:
    assert spa_client.get("/api/health").json()["status"] == "ok"


def test_committed_openapi_schema_matches_the_service() -> None:
    """The web app's typed client is generated from frontend/openapi.json; a stale file hides API changes from it."""
    import importlib.util

    repo = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("export_openapi", repo / "scripts" / "export_openapi.py")
    assert spec is not None and spec.loader is not None
    exporter = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exporter)
    committed = json.loads((repo / "frontend" / "openapi.json").read_text(encoding="utf-8"))
    assert committed == json.loads(json.dumps(exporter.build_spec())), (
        "frontend/openapi.json is stale: run `.venv/bin/python scripts/export_openapi.py` and `npm run gen:api`"
    )
