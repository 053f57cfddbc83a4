"""Board agent routes (service/routes/agents.py): registration, job leases by target board, results in the report.

The runs are written into the database as the job runner leaves them (a completed ``RunResult``), so the dispatch
rules are checked one by one here; tests/runner/test_agent_e2e.py runs a real ``edgeopt serve`` and ``edgeopt agent``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update

from edgeopt.report import BaselineResult, DeviceEstimate, LatencyStats, RunResult
from edgeopt.service.db.models import BoardMeasurement, Experiment, OptimizationRun, utcnow

RUNTIMES = ["executorch-xnnpack", "litert-xnnpack"]
PI5 = {"name": "Raspberry Pi 5 Model B Rev 1.0", "device": "rpi5", "is_raspberry_pi": True, "cores": 4,
       "runtimes": RUNTIMES}
LAPTOP = {"name": "x86_64 host: Some CPU (not a Raspberry Pi)", "device": None, "is_raspberry_pi": False,
          "runtimes": RUNTIMES}


def _completed_run(app: FastAPI, experiment_id: str, technique: str = "ptq_int8") -> None:
    estimate = DeviceEstimate(
        latency_ms=3.0, memory_mb=1.0, power_w=3.0, energy_mj=9.0, fits=True, runtime="xnnpack", threads=4
    )
    result = RunResult(
        technique=technique,
        status="completed",
        accuracy=0.9,
        latency_ms=LatencyStats(host=1.0, host_p90=1.1),
        estimates={"rpi5": estimate, "rpi4": estimate},
        artifact=f"{technique}.pte",
        precision="int8",
    )
    with app.state.session_factory() as session:
        row = OptimizationRun(experiment_id=experiment_id, technique=technique)
        row.apply_result(result)
        row.finished_at = utcnow()
        session.add(row)
        session.commit()


def _register(client: TestClient, body: dict[str, Any], **extra: Any) -> str:
    response = client.post("/api/agents", json={**body, **extra})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_a_job_goes_to_a_board_of_the_target_device_once_and_its_figure_reaches_the_results(
    app: FastAPI, client: TestClient, new_experiment: Any
) -> None:
    exp = new_experiment(device="rpi5")
    _completed_run(app, exp["id"])
    pi5 = _register(client, PI5)
    laptop = _register(client, LAPTOP)

    assert client.post(f"/api/agents/{laptop}/jobs/next").status_code == 204  # not a Pi, not asked to take any
    job = client.post(f"/api/agents/{pi5}/jobs/next")
    assert job.status_code == 200, job.text
    job_body = job.json()
    assert (job_body["technique"], job_body["device"], job_body["threads"]) == ("ptq_int8", "rpi5", 4)
    assert job_body["download_url"] == f"/api/experiments/{exp['id']}/runs/ptq_int8/download"
    assert client.post(f"/api/agents/{pi5}/jobs/next").status_code == 204  # leased: not handed out twice

    posted = client.post(
        f"/api/agents/{pi5}/jobs/{job_body['id']}/result",
        json={"latency_ms": 2.5, "latency_p90_ms": 2.7, "threads": 4, "runtime": "executorch-xnnpack"},
    )
    assert posted.status_code == 200, posted.text
    run = client.get(f"/api/experiments/{exp['id']}/results").json()["runs"][0]
    assert run["board_latency"]["board"] == PI5["name"]
    assert run["board_latency"]["latency_ms"] == 2.5 and run["board_latency"]["is_raspberry_pi"] is True
    assert run["board_latency"]["measured_at"]
    assert run["estimates"]["rpi5"]["latency_ms"] == 3.0  # the estimate stays next to it
    assert client.post(f"/api/agents/{pi5}/jobs/next").status_code == 204  # measured: no job left


def test_boards_of_other_devices_get_no_job_unless_they_accept_any(
    app: FastAPI, client: TestClient, new_experiment: Any
) -> None:
    exp = new_experiment(device="rpi4")
    _completed_run(app, exp["id"])
    assert client.post(f"/api/agents/{_register(client, PI5)}/jobs/next").status_code == 204
    anyone = _register(client, LAPTOP, accept_any_device=True)
    job = client.post(f"/api/agents/{anyone}/jobs/next")
    assert job.status_code == 200 and job.json()["device"] == "rpi4"


def test_a_board_gets_only_artifacts_its_installed_runtimes_run(
    app: FastAPI, client: TestClient, new_experiment: Any
) -> None:
    exp = new_experiment(device="rpi5")
    _completed_run(app, exp["id"])  # a .pte
    litert_only = _register(client, PI5, runtimes=["litert-xnnpack"])
    assert client.post(f"/api/agents/{litert_only}/jobs/next").status_code == 204
    assert client.post(f"/api/agents/{_register(client, PI5)}/jobs/next").status_code == 200


def test_an_expired_lease_is_taken_by_the_next_agent_and_the_first_one_can_no_longer_post(
    app: FastAPI, client: TestClient, new_experiment: Any
) -> None:
    exp = new_experiment(device="rpi5")
    _completed_run(app, exp["id"])
    first, second = _register(client, PI5), _register(client, PI5)
    job = client.post(f"/api/agents/{first}/jobs/next").json()
    assert client.post(f"/api/agents/{second}/jobs/next").status_code == 204
    with app.state.session_factory() as session:  # the first agent died: its lease runs out
        session.execute(
            update(BoardMeasurement).values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()
    again = client.post(f"/api/agents/{second}/jobs/next")
    assert again.status_code == 200 and again.json()["id"] == job["id"] and again.json()["attempts"] == 2
    late = client.post(
        f"/api/agents/{first}/jobs/{job['id']}/result", json={"latency_ms": 1.0, "latency_p90_ms": 1.0, "threads": 4}
    )
    assert late.status_code == 409 and "another board" in late.json()["detail"]
    assert client.post(f"/api/agents/{first}/jobs/{job['id']}/renew").status_code == 409
    assert client.post(f"/api/agents/{second}/jobs/{job['id']}/renew").status_code == 200


def test_a_failed_measurement_is_recorded_without_a_figure(
    app: FastAPI, client: TestClient, new_experiment: Any
) -> None:
    exp = new_experiment(device="rpi5")
    _completed_run(app, exp["id"])
    agent = _register(client, PI5)
    job = client.post(f"/api/agents/{agent}/jobs/next").json()
    incomplete = client.post(f"/api/agents/{agent}/jobs/{job['id']}/result", json={"latency_ms": 1.0})
    assert incomplete.status_code == 422 and "error" in incomplete.json()["detail"]
    failed = client.post(f"/api/agents/{agent}/jobs/{job['id']}/result", json={"error": "no ExecuTorch runtime"})
    assert failed.status_code == 200 and failed.json()["status"] == "failed"
    assert client.get(f"/api/experiments/{exp['id']}/results").json()["runs"][0]["board_latency"] is None


def test_registration_refuses_a_non_pi_claiming_a_pi_device_and_unknown_agents(client: TestClient) -> None:
    fake = client.post("/api/agents", json={**LAPTOP, "device": "rpi5"})
    assert fake.status_code == 422 and "Raspberry Pi" in fake.json()["detail"]
    assert client.post("/api/agents", json={**PI5, "device": "rpi9"}).status_code == 422
    assert client.post("/api/agents/nope/jobs/next").status_code == 404


def test_measurements_on_the_users_own_pi_correct_that_boards_estimates_and_report_the_error(
    app: FastAPI, client: TestClient, new_experiment: Any
) -> None:
    measured = new_experiment(device="rpi5")
    _completed_run(app, measured["id"])  # estimated 3.0 ms on every board
    pi5 = _register(client, PI5)
    job = client.post(f"/api/agents/{pi5}/jobs/next").json()
    result = {"latency_ms": 1.5, "latency_p90_ms": 1.6, "threads": 4, "runtime": "executorch-xnnpack"}
    assert client.post(f"/api/agents/{pi5}/jobs/{job['id']}/result", json=result).status_code == 200

    other = new_experiment(device="rpi5")  # not measured itself: corrected by the board's other figures
    _completed_run(app, other["id"])
    laptop = _register(client, LAPTOP, accept_any_device=True)
    job = client.post(f"/api/agents/{laptop}/jobs/next").json()
    assert job["experiment_id"] == other["id"]
    slow = {**result, "latency_ms": 30.0, "latency_p90_ms": 31.0}  # not a Pi: must not correct a Pi's estimates
    assert client.post(f"/api/agents/{laptop}/jobs/{job['id']}/result", json=slow).status_code == 200

    report = client.get(f"/api/experiments/{other['id']}/results").json()
    correction = report["board_correction"]
    assert (correction["device"], correction["measurements"]) == ("rpi5", 1)
    assert correction["factors"]["int8"] == 0.5 and correction["median_error"] == 2.0
    estimates = report["runs"][0]["estimates"]
    assert estimates["rpi5"]["latency_ms"] == 3.0 and estimates["rpi5"]["corrected_latency_ms"] == 1.5
    assert estimates["rpi4"]["corrected_latency_ms"] is None  # no rpi4 board measured anything
    assert report["runs"][0]["board_latency"]["is_raspberry_pi"] is False  # the laptop's figure stays, as its own


def _measured_baseline(app: FastAPI, experiment_id: str) -> None:
    """The experiment's original model as the runner leaves it: Experiment.baseline with a deployable artifact."""
    estimate = DeviceEstimate(
        latency_ms=6.0, memory_mb=2.0, power_w=3.0, energy_mj=18.0, fits=True, runtime="xnnpack", threads=2
    )
    baseline = BaselineResult(
        accuracy=0.92,
        size_bytes=1000,
        compressed_size_bytes=900,
        params=10,
        flops=20,
        latency_ms=LatencyStats(host=2.0, host_p90=2.2),
        artifact="baseline.pte",
        estimates={"rpi5": estimate},
    )
    with app.state.session_factory() as session:
        session.execute(
            update(Experiment).where(Experiment.id == experiment_id).values(baseline=baseline.model_dump(mode="json"))
        )
        session.commit()


def test_the_original_model_is_measured_first_and_shown_next_to_the_techniques(
    app: FastAPI, client: TestClient, new_experiment: Any
) -> None:
    exp = new_experiment(device="rpi5")
    _measured_baseline(app, exp["id"])
    _completed_run(app, exp["id"])
    pi5 = _register(client, PI5)
    first = client.post(f"/api/agents/{pi5}/jobs/next").json()
    assert first["technique"] == "baseline" and first["artifact"] == "baseline.pte"
    assert first["download_url"] == f"/api/experiments/{exp['id']}/runs/baseline/download"
    assert first["threads"] == 2  # the threads the original's estimate assumed
    second = client.post(f"/api/agents/{pi5}/jobs/next").json()
    assert second["technique"] == "ptq_int8"  # the baseline is leased: the next job is a technique's
    body = {"latency_ms": 5.0, "latency_p90_ms": 5.5, "threads": 2, "runtime": "executorch-xnnpack"}
    assert client.post(f"/api/agents/{pi5}/jobs/{first['id']}/result", json=body).status_code == 200
    report = client.get(f"/api/experiments/{exp['id']}/results").json()
    assert report["baseline"]["board_latency"]["latency_ms"] == 5.0
    assert report["baseline"]["board_latency"]["board"] == PI5["name"]
    assert report["runs"][0]["board_latency"] is None  # its own figure, not the original's
    assert client.post(f"/api/agents/{pi5}/jobs/next").status_code == 204  # both taken, nothing left


def test_an_original_model_of_another_device_or_runtime_is_not_offered(
    app: FastAPI, client: TestClient, new_experiment: Any
) -> None:
    exp = new_experiment(device="rpi4")
    _measured_baseline(app, exp["id"])
    assert client.post(f"/api/agents/{_register(client, PI5)}/jobs/next").status_code == 204
    litert_only = _register(client, {**PI5, "device": "rpi4", "runtimes": ["litert-xnnpack"]})
    assert client.post(f"/api/agents/{litert_only}/jobs/next").status_code == 204  # baseline.pte needs ExecuTorch


def test_the_original_models_figure_on_a_pi_corrects_that_boards_estimates(
    app: FastAPI, client: TestClient, new_experiment: Any
) -> None:
    exp = new_experiment(device="rpi5")
    _measured_baseline(app, exp["id"])  # estimated 6.0 ms at 2 threads on the Pi 5
    pi5 = _register(client, PI5)
    job = client.post(f"/api/agents/{pi5}/jobs/next").json()
    assert job["technique"] == "baseline"
    body = {"latency_ms": 3.0, "latency_p90_ms": 3.1, "threads": 2, "runtime": "executorch-xnnpack"}
    assert client.post(f"/api/agents/{pi5}/jobs/{job['id']}/result", json=body).status_code == 200
    report = client.get(f"/api/experiments/{exp['id']}/results").json()
    correction = report["board_correction"]
    assert (correction["device"], correction["measurements"]) == ("rpi5", 1)
    assert correction["factors"]["fp32"] == 0.5  # the original runs FP32: measured 3.0 ms against 6.0 estimated
    assert report["baseline"]["estimates"]["rpi5"]["corrected_latency_ms"] == 3.0
