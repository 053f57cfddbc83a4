"""What a user sees when things go wrong mid-run: a killed worker, a cancel, a service restart."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.runner.live import TERMINAL, LiveServer, Stream, create_experiment, server_env

pytestmark = pytest.mark.slow
FEW = ["ptq_int8", "prune_structured", "distillation"]


def _worker(server: LiveServer) -> psutil.Process:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for child in psutil.Process(server.process.pid).children(recursive=True):
            command = " ".join(child.cmdline())
            # The job worker is spawned; the forkserver (and its children) checks uploads (src/edgeopt/isolated.py).
            if "multiprocessing.spawn" in command and "resource_tracker" not in command:
                return child
        time.sleep(0.2)
    raise AssertionError("no worker process found")


def _start(server: LiveServer, model: Path, techniques: list[str]) -> tuple[str, Stream]:
    with server.client() as client:
        exp = create_experiment(client, model, "pytorch", techniques=techniques, epochs=1)
        stream = Stream(server, exp["id"])
        stream.next(timeout=20)
        assert client.post(f"/api/experiments/{exp['id']}/start").status_code == 202
    return exp["id"], stream


def _first_technique_done(message: dict) -> bool:
    return message["type"] == "technique_completed"


def test_killed_worker_fails_the_experiment_keeps_runs_and_service_stays_up(
    live_server: LiveServer, torch_demo_file: Path
) -> None:
    exp_id, stream = _start(live_server, torch_demo_file, FEW)
    stream.until(_first_technique_done, timeout=300)
    _worker(live_server).send_signal(signal.SIGKILL)
    final = stream.until(lambda m: m["type"] in TERMINAL, timeout=60)
    assert final["type"] == "experiment_failed"
    assert "worker process stopped unexpectedly" in final["error"]
    with live_server.client() as client:
        assert client.get("/api/health").status_code == 200
        exp = client.get(f"/api/experiments/{exp_id}").json()
        assert exp["status"] == "failed" and "exit code" in exp["error"]
        results = client.get(f"/api/experiments/{exp_id}/results").json()
        assert [r["technique"] for r in results["runs"]][:1] == ["ptq_int8"]
        assert results["runs"][0]["status"] == "completed"


def test_cancel_mid_run_stops_within_seconds_and_keeps_finished_runs(
    live_server: LiveServer, torch_demo_file: Path
) -> None:
    exp_id, stream = _start(live_server, torch_demo_file, FEW)
    stream.until(_first_technique_done, timeout=300)
    with live_server.client() as client:
        asked = time.monotonic()
        assert client.post(f"/api/experiments/{exp_id}/cancel").status_code == 202
        final = stream.until(lambda m: m["type"] in TERMINAL, timeout=60)
        took = time.monotonic() - asked
        assert final["type"] == "experiment_cancelled"
        assert took < 30, f"cancel took {took:.1f} s"
        exp = client.get(f"/api/experiments/{exp_id}").json()
        assert exp["status"] == "cancelled"
        runs = client.get(f"/api/experiments/{exp_id}/results").json()["runs"]
        assert runs and runs[0]["technique"] == "ptq_int8" and len(runs) < len(FEW)


def test_service_restart_mid_run_interrupts_then_resumes_without_redoing_runs(
    tmp_path: Path, torch_demo_file: Path
) -> None:
    server = LiveServer(tmp_path, server_env(tmp_path)).start()
    exp_id, stream = _start(server, torch_demo_file, FEW)
    done = stream.until(_first_technique_done, timeout=300)
    worker = _worker(server)
    server.kill()
    worker.wait(timeout=15)  # the worker must not outlive its service
    restarted = LiveServer(tmp_path, server_env(tmp_path)).start()
    try:
        with restarted.client() as client:
            exp = client.get(f"/api/experiments/{exp_id}").json()
            assert exp["status"] == "interrupted"
            kept = client.get(f"/api/experiments/{exp_id}/results").json()["runs"]
            assert kept[0] == done["run"]
            stream = Stream(restarted, exp_id)
            stream.next(timeout=20)
            assert client.post(f"/api/experiments/{exp_id}/start").status_code == 202
            final = stream.until(lambda m: m["type"] in TERMINAL, timeout=600)
            assert final["type"] == "experiment_completed", final
            runs = client.get(f"/api/experiments/{exp_id}/results").json()["runs"]
            assert [r["technique"] for r in runs] == FEW
            # Not re-run: the very same result, duration and all. Only its host latency is new: the finished
            # experiment re-times every artifact side by side (edgeopt.host_timing).
            assert runs[0]["latency_ms"]["method"] == "interleaved"
            assert _without_latency(runs[0]) == _without_latency(done["run"])
    finally:
        restarted.stop()
    assert not psutil.pid_exists(worker.pid) or worker.status() == psutil.STATUS_ZOMBIE
    assert os.path.isfile(tmp_path / "models" / exp_id / "artifacts" / "report.json")


def _without_latency(run: dict) -> dict:
    return {key: value for key, value in run.items() if key != "latency_ms"}
