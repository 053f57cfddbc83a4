"""The optional API key: every /api request and every /ws socket needs it; the web app's files stay open."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI, WebSocket
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse

from edgeopt.service.app import create_app
from edgeopt.service.security import check_websocket_key
from edgeopt.settings import Settings

KEY = "s3cret-key"


@pytest.fixture
def keyed_app(settings: Settings, tmp_path: Path) -> FastAPI:
    static = tmp_path / "static"
    static.mkdir()
    (static / "index.html").write_text("<html>app</html>")
    app = create_app(settings.model_copy(update={"api_key": KEY}), static_dir=static)

    @app.websocket("/ws/echo")
    async def echo(websocket: WebSocket) -> None:  # a stand-in socket: the real ones are written elsewhere
        await websocket.accept()
        await websocket.send_json({"helper_says": check_websocket_key(websocket, websocket.app.state.settings)})
        await websocket.close()

    return app


@pytest.fixture
def keyed(keyed_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(keyed_app) as client:
        yield client


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/health"),
        ("get", "/api/catalog"),
        ("get", "/api/experiments"),
        ("post", "/api/experiments"),
        ("get", "/api/experiments/abc"),
        ("delete", "/api/experiments/abc"),
        ("post", "/api/experiments/abc/upload"),
        ("get", "/api/no-such-route"),
    ],
)
@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}], ids=["missing", "wrong", "empty"])
def test_api_without_the_key_is_401(keyed: TestClient, method: str, path: str, headers: dict[str, str]) -> None:
    response = keyed.request(method.upper(), path, headers=headers)
    assert response.status_code == 401
    assert "X-API-Key" in response.json()["detail"]


def test_api_with_the_key_works(keyed: TestClient) -> None:
    headers = {"X-API-Key": KEY}
    assert keyed.get("/api/health", headers=headers).status_code == 200
    created = keyed.post(
        "/api/experiments", json={"framework": "pytorch", "dataset": "digits", "device": "rpi5"}, headers=headers
    )
    assert created.status_code == 201
    assert keyed.get(f"/api/experiments/{created.json()['id']}", headers=headers).status_code == 200


def test_web_app_and_cors_preflight_stay_open(keyed: TestClient, settings: Settings) -> None:
    assert keyed.get("/").text == "<html>app</html>"
    assert keyed.get("/experiments/1").status_code == 200
    preflight = keyed.options(
        "/api/experiments",
        headers={"Origin": settings.cors_origins[0], "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 200


def test_websocket_needs_the_key_in_its_query(keyed: TestClient) -> None:
    with pytest.raises(WebSocketDenialResponse) as denied, keyed.websocket_connect("/ws/echo"):
        pass
    assert denied.value.status_code == 401
    with pytest.raises(WebSocketDenialResponse), keyed.websocket_connect("/ws/echo?api_key=wrong"):
        pass
    with keyed.websocket_connect(f"/ws/echo?api_key={KEY}") as socket:
        assert socket.receive_json() == {"helper_says": True}


def test_no_key_configured_means_open(client: TestClient) -> None:
    assert client.get("/api/health").status_code == 200


def test_check_websocket_key_helper(settings: Settings) -> None:
    class FakeSocket:  # only the two attributes the helper reads
        def __init__(self, query: dict[str, str], headers: dict[str, str]) -> None:
            self.query_params = query
            self.headers = headers

    keyed = settings.model_copy(update={"api_key": KEY})
    assert check_websocket_key(FakeSocket({"api_key": KEY}, {}), keyed)  # type: ignore[arg-type]
    assert check_websocket_key(FakeSocket({}, {"X-API-Key": KEY}), keyed)  # type: ignore[arg-type]
    assert not check_websocket_key(FakeSocket({"api_key": "nope"}, {}), keyed)  # type: ignore[arg-type]
    assert not check_websocket_key(FakeSocket({}, {}), keyed)  # type: ignore[arg-type]
    assert check_websocket_key(FakeSocket({}, {}), settings)  # type: ignore[arg-type]
