"""Helpers for a real ``edgeopt serve`` in a subprocess, real HTTP and WebSocket clients, real worker processes.

Nothing here is faked: the job runner, its worker processes and the engine run exactly as in production, so the
tests can kill a worker or the whole service and see what a user would see.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

TERMINAL = ("experiment_completed", "experiment_failed", "experiment_cancelled")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    storage: Path
    env: dict[str, str]
    port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        log = (self.storage / "server.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edgeopt.cli", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {(self.storage / 'server.log').read_text()[-2000:]}")
            try:
                key = self.env.get("EDGEOPT_API_KEY")
                headers = {"X-API-Key": key} if key else {}
                if httpx.get(f"{self.url}/api/health", headers=headers, timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("server did not start within 60 s")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)


def server_env(storage: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEOPT_")}
    # Latency as in the other tests: 50 timed calls, not the default half second per artifact.
    defaults = {
        "EDGEOPT_STORAGE_DIR": str(storage),
        "EDGEOPT_OFFLINE": "1",
        "EDGEOPT_LATENCY_SECONDS": "0",
        "TF_USE_LEGACY_KERAS": "1",
    }
    env.update({**defaults, **extra})  # a caller's value wins (a benchmark times latency as a user's run would)
    return env


def create_experiment(client: httpx.Client, model: Path, framework: str, **fields: Any) -> dict[str, Any]:
    body = {"name": f"test {framework}", "framework": framework, "dataset": "digits", "device": "rpi4", **fields}
    response = client.post("/api/experiments", json=body)
    assert response.status_code == 201, response.text
    exp = response.json()
    with model.open("rb") as handle:
        upload = client.post(f"/api/experiments/{exp['id']}/upload", files={"file": (model.name, handle)})
    assert upload.status_code in (200, 201), upload.text
    return upload.json() if "status" in upload.json() else client.get(f"/api/experiments/{exp['id']}").json()


class Stream:
    """A WebSocket client that records every message with the time it arrived."""

    def __init__(self, server: LiveServer, experiment_id: str) -> None:
        self.socket = connect(f"{server.ws_url}/ws/experiments/{experiment_id}", open_timeout=20)
        self.messages: list[dict[str, Any]] = []
        self.arrivals: list[float] = []

    def next(self, timeout: float) -> dict[str, Any]:
        message = json.loads(self.socket.recv(timeout=timeout))
        self.messages.append(message)
        self.arrivals.append(time.monotonic())
        return message

    def until(self, predicate: Any, timeout: float = 600) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching message in {timeout} s; last: {self.messages[-3:]}")
            message = self.next(left)
            if predicate(message):
                return message

    def close(self) -> None:
        self.socket.close()


def report_figures(report: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Each technique's (accuracy, size in bytes) in a report: what the same seed must reproduce anywhere."""
    return {run["technique"]: (run.get("accuracy"), run.get("size_bytes")) for run in report["runs"]}
