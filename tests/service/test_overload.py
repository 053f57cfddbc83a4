"""Heavy and stalling clients against a real ``edgeopt serve`` (uvicorn in a subprocess), on SQLite and PostgreSQL.

An upload holds no database connection while its body streams, a stalled body is cut off with 408, and parallel
create/upload/delete clients never see a 5xx.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.runner.live import LiveServer, server_env
from tests.service.conftest import experiment_body, tiny_npz

STALLED_UPLOADS = 32
IDLE_TIMEOUT_S = 4
BOUNDARY = "edgeopt-stall-boundary"


@pytest.fixture
def server(migrated_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    # A pool of 4 connections: if a stalled upload held one, the 32 stalled uploads would starve every other request.
    env = server_env(
        tmp_path,
        EDGEOPT_DATABASE_URL=migrated_url,
        EDGEOPT_UPLOAD_IDLE_TIMEOUT_S=str(IDLE_TIMEOUT_S),
        EDGEOPT_DB_POOL_SIZE="2",
        EDGEOPT_DB_MAX_OVERFLOW="2",
    )
    live = LiveServer(tmp_path, env).start()
    yield live
    live.stop()


def _stall_upload(server: LiveServer, experiment_id: str) -> socket.socket:
    """Send an upload's headers and the start of its body, then nothing more."""
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="m.pt2"\r\n\r\n'.encode()
    body_start = head + b"PK\x03\x04" + b"\x00" * 2000
    request = (
        f"POST /api/experiments/{experiment_id}/upload HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.port}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(body_start) + 1_000_000}\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(request + body_start)
    return sock


def _read_until_closed(sock: socket.socket) -> str:
    """The whole answer; the server closing the connection (as it must after a 408) ends it."""
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return received.decode(errors="replace")


def test_stalled_uploads_neither_block_other_requests_nor_stay_open(server: LiveServer, tmp_path: Path) -> None:
    with server.client() as client:
        experiment = client.post("/api/experiments", json=experiment_body()).json()
    sockets = [_stall_upload(server, experiment["id"]) for _ in range(STALLED_UPLOADS)]
    try:
        time.sleep(1)  # every stalled request has reached its route and is waiting for the rest of its body
        partial = list((tmp_path / "models" / experiment["id"]).glob(".upload-*.part"))
        assert len(partial) == STALLED_UPLOADS  # the stalled bodies really are being received
        with httpx.Client(base_url=server.url, timeout=1.0) as quick:  # a slower answer fails with a timeout
            for created in range(5):
                assert quick.get("/api/health").status_code == 200
                listed = quick.get("/api/experiments")
                assert listed.status_code == 200 and listed.json()["total"] == 1 + created
                assert quick.post("/api/experiments", json=experiment_body()).status_code == 201
        for sock in sockets:
            answer = _read_until_closed(sock)
            assert answer.startswith("HTTP/1.1 408"), answer[:200]
            assert "stalled" in answer
    finally:
        for sock in sockets:
            sock.close()
    assert not list((tmp_path / "models" / experiment["id"]).glob(".upload-*.part"))


def _client_session(server: LiveServer, rounds: int, npz: bytes) -> list[int]:
    codes: list[int] = []
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for _ in range(rounds):
            created = client.post("/api/experiments", json=experiment_body())
            codes.append(created.status_code)
            if created.status_code != 201:
                continue
            experiment_id = created.json()["id"]
            uploaded = client.post(f"/api/experiments/{experiment_id}/dataset", files={"file": ("d.npz", npz)})
            codes.append(uploaded.status_code)
            codes.append(client.get(f"/api/experiments/{experiment_id}").status_code)
            codes.append(client.delete(f"/api/experiments/{experiment_id}").status_code)
    return codes


def test_parallel_create_upload_delete_clients_get_no_server_error(migrated_url: str, tmp_path: Path) -> None:
    env = server_env(tmp_path, EDGEOPT_DATABASE_URL=migrated_url)
    server = LiveServer(tmp_path, env).start()
    npz = tiny_npz()
    try:
        with ThreadPoolExecutor(max_workers=20) as pool:
            results = list(pool.map(lambda _: _client_session(server, 3, npz), range(20)))
        with server.client() as client:
            assert client.get("/api/experiments").json()["total"] == 0
    finally:
        server.stop()
    codes = [code for session in results for code in session]
    assert len(codes) == 20 * 3 * 4
    assert sorted(set(codes)) == [200, 201, 204], codes
    leftovers = [p for area in ("models", "datasets") for p in (tmp_path / area).rglob("*") if p.is_file()]
    assert leftovers == []
