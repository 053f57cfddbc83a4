"""A real ``edgeopt serve`` and real ``edgeopt agent`` processes on this machine (issue 16).

The agent must say truthfully what this host is (not a Pi), measure a completed artifact and see the figure land in
the results API marked with this host; an agent killed mid-measurement gives its job back when the lease runs out
(and a live one keeps it by renewing); a wrong API key is refused with one line and exit 2. Demo CNN, ptq_int8 only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgeopt.board import identify
from tests.runner.live import LiveServer, create_experiment, server_env

KEY = "board-test-key"
LEASE_S = 3


@pytest.fixture
def keyed_server(tmp_path: Path) -> Iterator[LiveServer]:
    env = server_env(tmp_path, EDGEOPT_API_KEY=KEY, EDGEOPT_BOARD_LEASE_S=str(LEASE_S))
    server = LiveServer(tmp_path, env).start()
    yield server
    server.stop()


def _agent(server: LiveServer, log: Path, *args: str, **env: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "edgeopt.cli", "agent", "--server", server.url, "--poll-seconds", "0.3", *args]
    base = {k: v for k, v in server.env.items() if k != "EDGEOPT_API_KEY"}  # the agent gets the key on its line
    return subprocess.Popen(command, env={**base, **env}, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}")


def test_agent_on_this_host_measures_a_completed_artifact_and_a_killed_agent_gives_its_job_back(
    keyed_server: LiveServer, torch_demo_file: Path, tmp_path: Path
) -> None:
    server = keyed_server
    here = identify()
    assert not here.is_raspberry_pi  # this test machine; on a Pi the checks below would name it as one
    with httpx.Client(base_url=server.url, timeout=60, headers={"X-API-Key": KEY}) as client:
        assert httpx.get(f"{server.url}/api/agents", headers={"X-API-Key": "wrong"}).status_code == 401
        exp = create_experiment(client, torch_demo_file, "pytorch", device="rpi5", techniques=["ptq_int8"])
        assert client.post(f"/api/experiments/{exp['id']}/start").status_code == 202

        # Refusals, while the experiment runs: a wrong key, and a non-Pi host not asked to stand in for a Pi.
        wrong = subprocess.run(
            [sys.executable, "-m", "edgeopt.cli", "agent", "--server", server.url, "--api-key", "wrong",
             "--accept-any-device"],
            env=server.env, capture_output=True, text=True, timeout=120,
        )
        assert wrong.returncode == 2 and "refused the API key" in wrong.stderr, wrong.stderr
        assert len(wrong.stderr.strip().splitlines()) == 1
        not_pi = subprocess.run(
            [sys.executable, "-m", "edgeopt.cli", "agent", "--server", server.url, "--api-key", KEY],
            env=server.env, capture_output=True, text=True, timeout=120,
        )
        assert not_pi.returncode == 2 and here.name in not_pi.stderr and "--accept-any-device" in not_pi.stderr
        assert client.get("/api/agents").json() == []  # neither registered

        def status() -> str:
            return client.get(f"/api/experiments/{exp['id']}").json()["status"]

        assert _wait(lambda: status() in ("completed", "failed"), 600, "the experiment") and status() == "completed"

        # Agent A takes the first job, the original model's, and measures slowly (10 minutes of timing asked); it
        # renews its lease meanwhile.
        log_a = tmp_path / "agent_a.log"
        agent_a = _agent(server, log_a, "--api-key", KEY, "--accept-any-device", EDGEOPT_LATENCY_SECONDS="600")
        try:
            _wait(lambda: "measuring baseline" in log_a.read_text(), 120, f"agent A to take the job: {log_a}")
            jobs = client.get(f"/api/experiments/{exp['id']}/board-measurements").json()
            assert [(j["status"], j["attempts"]) for j in jobs] == [("leased", 1)]
            first_agent = jobs[0]["agent_id"]
            time.sleep(2 * LEASE_S)  # longer than the lease: only renewals keep it
            jobs = client.get(f"/api/experiments/{exp['id']}/board-measurements").json()
            assert [(j["status"], j["attempts"], j["agent_id"]) for j in jobs] == [("leased", 1, first_agent)]
        finally:
            agent_a.send_signal(signal.SIGKILL)
            agent_a.wait(timeout=20)

        # Agent B gets that job once A's lease has run out, measures it, then the technique's artifact, and posts both.
        log_b = tmp_path / "agent_b.log"
        agent_b = _agent(server, log_b, "--accept-any-device", EDGEOPT_AGENT_API_KEY=KEY)
        try:
            def measured() -> tuple[dict[str, Any], dict[str, Any]] | None:
                results = client.get(f"/api/experiments/{exp['id']}/results").json()
                original, technique = results["baseline"]["board_latency"], results["runs"][0]["board_latency"]
                return (original, technique) if original and technique else None

            original, board = _wait(measured, 180, f"agent B's measurements: {log_b}")
        finally:
            agent_b.send_signal(signal.SIGTERM)
            agent_b.wait(timeout=20)
        assert board["board"] == here.name and "not a Raspberry Pi" in board["board"]
        assert board["is_raspberry_pi"] is False and board["device"] is None
        assert board["latency_ms"] > 0 and board["latency_p90_ms"] >= board["latency_ms"]
        assert board["runtime"] == "executorch-xnnpack" and board["measured_at"]
        assert original["board"] == here.name and original["latency_ms"] > 0  # the original, measured on the same host
        jobs = client.get(f"/api/experiments/{exp['id']}/board-measurements").json()
        assert [(j["technique"], j["status"], j["attempts"]) for j in jobs] == [
            ("baseline", "completed", 2),
            ("ptq_int8", "completed", 1),
        ]
        assert jobs[0]["agent_id"] != first_agent
        agents = {a["id"]: a for a in client.get("/api/agents").json()}
        assert agents[jobs[0]["agent_id"]]["name"] == here.name and len(agents) == 2

        # edgeopt bench on the same artifact, as a user would run it on the board.
        artifact = tmp_path / "ptq_int8.pte"
        artifact.write_bytes(client.get(f"/api/experiments/{exp['id']}/runs/ptq_int8/download").content)
    bench = subprocess.run(
        [sys.executable, "-m", "edgeopt.cli", "bench", str(artifact), "--json"],
        env=server.env, capture_output=True, text=True, timeout=120,
    )
    assert bench.returncode == 0, bench.stderr
    figures = json.loads(bench.stdout)
    assert figures["input_shape"] == [1, 1, 32, 32] and figures["threads"] == 1
    assert figures["board"]["name"] == here.name and figures["latency_ms"]["host"] > 0
    assert os.path.basename(figures["artifact"]) == "ptq_int8.pte"
