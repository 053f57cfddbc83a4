"""A 300 MB upload to a real uvicorn server: the server's memory stays flat and the refused file leaves nothing.

The body is streamed from a generator (the client never holds it either) and is not a model, so the server writes
all of it to disk, sniffs it, answers 400 and deletes it. The server's RSS is sampled during the upload; the peak
growth over the warmed-up server is printed (``pytest -s``) and must stay under 100 MB.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from edgeopt.service.db.migrate import upgrade

pytestmark = pytest.mark.slow

UPLOAD_BYTES = 300 * 1024 * 1024
BLOCK = 1024 * 1024
MAX_GROWTH_BYTES = 100 * 1024 * 1024
BOUNDARY = "edgeopt-big-upload"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


Server = tuple[str, psutil.Process, Path]


def _listens_on(process: psutil.Process, port: int) -> bool:
    """Our server, not another one that happened to take the port between our probe and its bind."""
    return any(c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN for c in process.net_connections())


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[[int], Server]]:
    """Starts ``edgeopt``'s app in a real uvicorn process, configured by environment like ``edgeopt serve``."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(max_upload_bytes: int) -> Server:
        folder = tmp_path / f"server{len(processes)}"
        storage = folder / "storage"
        folder.mkdir()
        database_url = f"sqlite:///{folder / 'big.db'}"
        upgrade(database_url)
        port = _free_port()
        env = {
            **os.environ,
            "EDGEOPT_STORAGE_DIR": str(storage),
            "EDGEOPT_DATABASE_URL": database_url,
            "EDGEOPT_MAX_UPLOAD_BYTES": str(max_upload_bytes),
        }
        env.pop("EDGEOPT_API_KEY", None)
        command = [sys.executable, "-m", "uvicorn", "--factory", "edgeopt.service.app:create_app"]
        command += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
        log_path = folder / "server.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
        processes.append(process)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/api/health", timeout=2).status_code == 200 and _listens_on(
                    psutil.Process(process.pid), port
                ):
                    return base, psutil.Process(process.pid), storage
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.2)

    yield start
    for process in processes:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def server(start_server: Callable[[int], Server]) -> Server:
    return start_server(UPLOAD_BYTES * 2)


def _multipart_stream(size: int) -> tuple[Iterator[bytes], int]:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="huge.pt"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    block = b"NOT A MODEL " + os.urandom(BLOCK - 12)

    def chunks() -> Iterator[bytes]:
        yield head
        sent = 0
        while sent < size:
            piece = block[: min(BLOCK, size - sent)]
            sent += len(piece)
            yield piece
        yield tail

    return chunks(), len(head) + size + len(tail)


class RssSampler(threading.Thread):
    def __init__(self, process: psutil.Process) -> None:
        super().__init__(daemon=True)
        self.process = process
        self.peak = process.memory_info().rss
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.02)


def test_300mb_upload_keeps_server_memory_flat(server: Server) -> None:
    base, process, storage = server
    with httpx.Client(base_url=base, timeout=300) as client:
        experiment = client.post(
            "/api/experiments", json={"framework": "pytorch", "dataset": "digits", "device": "rpi4"}
        )
        experiment_id = experiment.json()["id"]
        # Warm the upload path once, so one-off imports and allocations are not counted as growth.
        warm_body, warm_length = _multipart_stream(2 * BLOCK)
        warm = client.post(
            f"/api/experiments/{experiment_id}/upload",
            content=warm_body,
            headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}", "content-length": str(warm_length)},
        )
        assert warm.status_code == 400
        baseline = process.memory_info().rss
        sampler = RssSampler(process)
        sampler.start()
        body, length = _multipart_stream(UPLOAD_BYTES)
        started = time.monotonic()
        response = client.post(
            f"/api/experiments/{experiment_id}/upload",
            content=body,
            headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}", "content-length": str(length)},
        )
        elapsed = time.monotonic() - started
        sampler.stopped.set()
        sampler.join()
    growth = sampler.peak - baseline
    print(
        f"\n300 MB upload: server RSS baseline {baseline / 2**20:.1f} MiB, peak {sampler.peak / 2**20:.1f} MiB, "
        f"peak growth {growth / 2**20:.1f} MiB, {UPLOAD_BYTES / 2**20 / elapsed:.0f} MiB/s"
    )
    assert response.status_code == 400, response.text
    assert "not a model file" in response.json()["detail"]
    assert growth < MAX_GROWTH_BYTES
    assert [p for p in storage.rglob("*") if p.is_file()] == []  # neither the temporary nor a final file remains


def test_small_valid_upload_through_the_real_server(server: Server, tmp_path: Path) -> None:
    """The same server path with a file it accepts: stored byte for byte under a service-chosen name."""
    import hashlib

    torch = pytest.importorskip("torch")
    weights = tmp_path / "weights.pt"
    torch.save(torch.nn.Linear(4, 2).state_dict(), weights)
    base, _, storage = server
    with httpx.Client(base_url=base, timeout=60) as client:
        experiment_id = client.post(
            "/api/experiments", json={"framework": "pytorch", "dataset": "digits", "device": "rpi4"}
        ).json()["id"]
        with weights.open("rb") as handle:
            response = client.post(
                f"/api/experiments/{experiment_id}/upload", files={"file": ("../weights.pt", handle)}
            )
    assert response.status_code == 200, response.text
    (record,) = response.json()["files"]
    (stored,) = (storage / "models" / experiment_id).iterdir()
    assert stored.name == f"{record['id']}-weights.pt"
    assert (
        record["sha256"]
        == hashlib.sha256(stored.read_bytes()).hexdigest()
        == hashlib.sha256(weights.read_bytes()).hexdigest()
    )


@pytest.mark.parametrize("declared_length", [True, False], ids=["content-length", "chunked"])
def test_over_limit_upload_gets_413_over_real_http(
    start_server: Callable[[int], Server], declared_length: bool
) -> None:
    """The client is told 413 while it is still sending, and the server keeps nothing of the partial file."""
    base, _, storage = start_server(10 * BLOCK)
    body, length = _multipart_stream(60 * BLOCK)
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    if declared_length:
        headers["content-length"] = str(length)
    with httpx.Client(base_url=base, timeout=60) as client:
        experiment_id = client.post(
            "/api/experiments", json={"framework": "pytorch", "dataset": "digits", "device": "rpi4"}
        ).json()["id"]
        response = client.post(f"/api/experiments/{experiment_id}/upload", content=body, headers=headers)
    assert response.status_code == 413
    assert "EDGEOPT_MAX_UPLOAD_BYTES" in response.json()["detail"]
    assert [p for p in storage.rglob("*") if p.is_file()] == []
