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


# --- Inputs the schema allows never end as a 500; secrets never reach a log ---------------------------------------


def test_huge_offset_is_422(client: TestClient) -> None:
    response = client.get("/api/experiments", params={"offset": 2**63})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "offset"]
    assert client.get("/api/experiments", params={"offset": 2**31 - 1}).json()["items"] == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/experiments/abc%00def"),
        ("delete", "/api/experiments/%00"),
        ("post", "/api/experiments/abc%00/upload"),
        ("get", "/api/experiments?limit=1%00"),
    ],
)
def test_nul_in_path_or_query_is_400(client: TestClient, method: str, path: str) -> None:
    response = client.request(method.upper(), path)
    assert response.status_code == 400
    assert "NUL" in response.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {"name": "a\x00b"},
        {"technique_configs": {"ptq_int8": {"seed\x00": 1}}},
    ],
)
def test_nul_in_a_json_body_is_422(client: TestClient, body: dict[str, object]) -> None:
    response = client.post(
        "/api/experiments", json={"framework": "pytorch", "dataset": "digits", "device": "rpi4", **body}
    )
    assert response.status_code == 422
    assert "NUL" in response.text


def test_nul_in_an_uploaded_file_name_is_400(client: TestClient) -> None:
    created = client.post("/api/experiments", json={"framework": "pytorch", "dataset": "digits", "device": "rpi4"})
    body = (  # written out by hand: HTTP clients escape a NUL in a file name, a hostile client need not
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="model\x00.pt2"\r\n\r\nPK\x03\x04\r\n--b--\r\n'
    )
    response = client.post(
        f"/api/experiments/{created.json()['id']}/upload",
        content=body,
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert response.status_code == 400
    assert "NUL" in response.json()["detail"]


def test_websocket_api_key_never_reaches_the_log(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from edgeopt.service.logging import configure_logging

    configure_logging()
    with caplog.at_level(logging.INFO):
        # What uvicorn logs for each socket, and its access line for an HTTP request carrying the key.
        logging.getLogger("uvicorn.error").info(
            '%s - "WebSocket %s" [accepted]', "127.0.0.1:5000", f"/ws/experiments/abc?api_key={KEY}&x=1"
        )
        logging.getLogger("uvicorn.access").info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", f"/api/health?API_KEY={KEY}", "1.1", 200
        )
    assert len(caplog.records) == 2
    assert KEY not in caplog.text
    assert "api_key=[redacted]&x=1" in caplog.text
