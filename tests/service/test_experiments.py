"""The experiment endpoints: create (both paths), validation against the catalog, list, read, delete."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from edgeopt.catalog import TECHNIQUE_NAMES
from edgeopt.report import BaselineResult, LatencyStats, RunResult
from edgeopt.report import Recommendation as RecommendationBody
from edgeopt.service.db.models import Experiment, ExperimentProgress, OptimizationRun, Recommendation
from edgeopt.service.db.session import make_session_factory
from tests.service.conftest import tiny_npz

BASE = {"framework": "pytorch", "dataset": "digits", "device": "rpi4"}


@pytest.mark.parametrize("path", ["/api/experiments", "/api/experiments/create"])
def test_create_with_defaults(client: TestClient, path: str) -> None:
    response = client.post(path, json={**BASE, "name": "  my run  "})
    assert response.status_code == 201, response.text
    body = response.json()
    assert len(body["id"]) == 32
    assert body["name"] == "my run"
    assert body["goal"] == "balanced"
    assert body["techniques"] == list(TECHNIQUE_NAMES)
    assert body["status"] == "created"
    assert body["constraints"] == {} and body["technique_configs"] == {} and body["files"] == []
    assert datetime.fromisoformat(body["created_at"]).tzinfo is not None


def test_create_with_every_field(client: TestClient) -> None:
    response = client.post(
        "/api/experiments/create",
        json={
            **BASE,
            "framework": "tensorflow",
            "device": "rpi_zero_2w",
            "goal": "minimize_size",
            "constraints": {"min_accuracy": 0.9, "max_size_mb": 5, "max_latency_ms": 20, "max_accuracy_drop": 0.02},
            "techniques": ["qat_int8", "ptq_int8"],
            "arch": "mobilenet_v2",
            "epochs": 2,
            "technique_configs": {"ptq_int8": {"calibration_samples": 64}},
            "preprocessing": {"preset": "imagenet", "input_size": [96, 96], "channel_order": "bgr"},
            "time_budget_s": 120,
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["techniques"] == ["ptq_int8", "qat_int8"]  # catalog order, whatever order was sent
    assert body["constraints"] == {
        "min_accuracy": 0.9,
        "max_size_mb": 5,
        "max_latency_ms": 20,
        "max_accuracy_drop": 0.02,
    }
    assert body["arch"] == "mobilenet_v2" and body["epochs"] == 2
    assert body["status"] == "ready"  # a named architecture needs no upload
    assert body["technique_configs"] == {"ptq_int8": {"calibration_samples": 64}}
    assert body["preprocessing"] == {
        "preset": "imagenet", "input_size": [96, 96], "channel_order": "bgr", "value_range": "0-1", "mean": None,
        "std": None,
    }
    assert client.get(f"/api/experiments/{body['id']}").json()["preprocessing"] == body["preprocessing"]
    assert body["time_budget_s"] == 120  # stored, and handed to the job as the strength searches' time budget


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"framework": "jax"}, ("framework",)),
        ({"device": "rpi3"}, ("device",)),
        ({"goal": "fastest"}, ("goal",)),
        ({"dataset": "imagenet"}, ("dataset",)),
        ({"arch": "resnet50"}, ("arch",)),
        ({"techniques": ["ptq_int8", "magic"]}, ("techniques", 1)),
        ({"techniques": ["ptq_int8", "ptq_int8"]}, ("techniques",)),
        ({"techniques": []}, ("techniques",)),
        ({"constraints": {"min_accuracy": 1.5}}, ("constraints", "min_accuracy")),
        ({"constraints": {"max_size_mb": -1}}, ("constraints", "max_size_mb")),
        ({"constraints": {"max_latency_ms": 0}}, ("constraints", "max_latency_ms")),
        ({"constraints": {"max_accuracy_drop": -0.1}}, ("constraints", "max_accuracy_drop")),
        ({"constraints": {"max_speed": 1}}, ("constraints", "max_speed")),
        ({"epochs": 101}, ("epochs",)),
        ({"epochs": -1}, ("epochs",)),
        ({"time_budget_s": 0}, ("time_budget_s",)),
        ({"technique_configs": {"warp": {}}}, ("technique_configs", "warp", "[key]")),
        ({"technique_configs": {"ptq_int8": {"calibration_samples": 0}}}, ("technique_configs",)),
        ({"technique_configs": {"ptq_int8": {"bogus": 1}}}, ("technique_configs",)),
        ({"colour": "red"}, ("colour",)),
        ({"preprocessing": {"preset": "custom", "mean": [0.5]}}, ("preprocessing",)),
        ({"preprocessing": {"value_range": "0-65535"}}, ("preprocessing", "value_range")),
    ],
)
def test_invalid_field_is_422_naming_it(client: TestClient, overrides: dict[str, Any], field: tuple[Any, ...]) -> None:
    response = client.post("/api/experiments", json={**BASE, **overrides})
    assert response.status_code == 422, response.text
    locations = [tuple(error["loc"][1:]) for error in response.json()["detail"]]
    assert field in locations
    assert client.get("/api/experiments").json()["total"] == 0


def test_invalid_technique_config_message_names_the_setting(client: TestClient) -> None:
    response = client.post(
        "/api/experiments", json={**BASE, "technique_configs": {"ptq_int8": {"calibration_samples": 0}}}
    )
    assert "technique_configs.ptq_int8.calibration_samples" in response.json()["detail"][0]["msg"]


@pytest.mark.parametrize("missing", ["framework", "dataset", "device"])
def test_required_field_missing_is_422(client: TestClient, missing: str) -> None:
    body = {k: v for k, v in BASE.items() if k != missing}
    response = client.post("/api/experiments", json=body)
    assert response.status_code == 422
    assert ["body", missing] in [error["loc"] for error in response.json()["detail"]]


def test_list_is_paginated_newest_first(client: TestClient, new_experiment: Callable[..., dict[str, Any]]) -> None:
    created = [new_experiment(name=f"e{i}")["id"] for i in range(5)]
    page = client.get("/api/experiments", params={"limit": 2, "offset": 0}).json()
    assert page["total"] == 5 and page["limit"] == 2 and page["offset"] == 0
    assert [item["id"] for item in page["items"]] == created[::-1][:2]
    rest = client.get("/api/experiments", params={"limit": 10, "offset": 2}).json()
    assert [item["id"] for item in rest["items"]] == created[::-1][2:]
    assert client.get("/api/experiments", params={"offset": 5}).json()["items"] == []
    default = client.get("/api/experiments").json()
    assert default["limit"] == 20 and len(default["items"]) == 5


BASELINE = BaselineResult(
    accuracy=0.97,
    size_bytes=4_000_000,
    compressed_size_bytes=3_700_000,
    params=1_000_000,
    flops=2_000_000,
    latency_ms=LatencyStats(host=2.0, host_p90=2.4),
    artifact="baseline.pte",
)


def _run(technique: str, accuracy: float, size_bytes: int, latency: float) -> RunResult:
    return RunResult(
        technique=technique,
        status="completed",
        accuracy=accuracy,
        size_bytes=size_bytes,
        latency_ms=LatencyStats(host=latency, host_p90=latency * 1.2),
        artifact=f"{technique}.pte",
    )


def _finish(app: Any, experiment_id: str, recommended: str | None, runs: list[RunResult]) -> None:
    """Store what the job runner writes at the end: baseline, runs and the recommendation."""
    with make_session_factory(app.state.engine)() as session:
        experiment = session.get(Experiment, experiment_id)
        assert experiment is not None
        experiment.status = "completed"
        experiment.baseline = BASELINE.model_dump(mode="json")
        for result in runs:
            row = OptimizationRun(technique=result.technique)
            row.apply_result(result)
            experiment.runs.append(row)
        body = RecommendationBody(technique=recommended, goal="balanced", reasoning="test")
        session.add(Recommendation(experiment_id=experiment_id, goal="balanced", body=body.model_dump(mode="json")))
        session.commit()


def test_list_carries_the_recommended_summary(
    client: TestClient, new_experiment: Callable[..., dict[str, Any]], app: Any
) -> None:
    """The home page shows each row's recommended result from the list alone, without a report per row."""
    recommended = new_experiment(name="recommended")["id"]
    runs = [_run("ptq_int8", 0.96, 1_100_000, 0.9), _run("ptq_int4", 0.95, 600_000, 1.1)]
    _finish(app, recommended, "ptq_int4", runs)
    baseline = new_experiment(name="baseline")["id"]
    _finish(app, baseline, "baseline", [])
    nothing = new_experiment(name="nothing to recommend")["id"]
    _finish(app, nothing, None, [])
    fresh = new_experiment(name="not run")["id"]

    items = {item["id"]: item for item in client.get("/api/experiments").json()["items"]}
    assert items[recommended]["recommended"] == {
        "technique": "ptq_int4",
        "accuracy": 0.95,
        "size_bytes": 600_000,
        "latency_host_ms": 1.1,
    }
    assert items[baseline]["recommended"] == {
        "technique": "baseline",
        "accuracy": 0.97,
        "size_bytes": 4_000_000,
        "latency_host_ms": 2.0,
    }
    assert items[nothing]["recommended"] is None
    assert items[fresh]["recommended"] is None
    for experiment_id, item in items.items():  # the single-experiment endpoint says the same
        assert client.get(f"/api/experiments/{experiment_id}").json() == item


def test_list_queries_do_not_grow_with_the_page(
    client: TestClient, new_experiment: Callable[..., dict[str, Any]], app: Any
) -> None:
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    def statements_for_list() -> int:
        statements.clear()
        event.listen(app.state.engine, "before_cursor_execute", count)
        try:
            assert client.get("/api/experiments").status_code == 200
        finally:
            event.remove(app.state.engine, "before_cursor_execute", count)
        return len(statements)

    for _ in range(2):
        _finish(app, new_experiment()["id"], "ptq_int8", [_run("ptq_int8", 0.96, 1_000_000, 1.0)])
    few = statements_for_list()
    for _ in range(6):
        _finish(app, new_experiment()["id"], "ptq_int8", [_run("ptq_int8", 0.96, 1_000_000, 1.0)])
    many = statements_for_list()
    assert len(client.get("/api/experiments").json()["items"]) == 8
    assert many == few, statements


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"offset": -1}, {"limit": "many"}])
def test_bad_pagination_is_422(client: TestClient, params: dict[str, Any]) -> None:
    response = client.get("/api/experiments", params=params)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", next(iter(params))]


def test_get_returns_the_experiment(client: TestClient, new_experiment: Callable[..., dict[str, Any]]) -> None:
    experiment = new_experiment(goal="minimize_latency")
    response = client.get(f"/api/experiments/{experiment['id']}")
    assert response.status_code == 200
    assert response.json() == experiment


@pytest.mark.parametrize("method", ["get", "delete"])
def test_unknown_id_is_404(client: TestClient, method: str) -> None:
    response = getattr(client, method)("/api/experiments/does-not-exist")
    assert response.status_code == 404
    assert response.json() == {"detail": "No experiment with id 'does-not-exist'.", "field": None}


def test_delete_removes_rows_and_files(
    client: TestClient,
    new_experiment: Callable[..., dict[str, Any]],
    storage_dir: Path,
    app: Any,
) -> None:
    experiment = new_experiment()
    other = new_experiment()
    upload = client.post(f"/api/experiments/{experiment['id']}/dataset", files={"file": ("d.npz", tiny_npz())})
    assert upload.status_code == 200, upload.text
    artifact = storage_dir / "models" / experiment["id"] / "artifacts" / "ptq_int8.pte"
    artifact.parent.mkdir(parents=True)
    artifact.write_bytes(b"artifact")
    with make_session_factory(app.state.engine)() as session:  # rows the job runner would have written
        session.add_all(
            [
                OptimizationRun(experiment_id=experiment["id"], technique="ptq_int8", status="completed"),
                Recommendation(experiment_id=experiment["id"], goal="balanced"),
                ExperimentProgress(experiment_id=experiment["id"]),
            ]
        )
        session.commit()

    response = client.delete(f"/api/experiments/{experiment['id']}")
    assert response.status_code == 204
    assert client.get(f"/api/experiments/{experiment['id']}").status_code == 404
    assert not (storage_dir / "models" / experiment["id"]).exists()
    assert not (storage_dir / "datasets" / experiment["id"]).exists()
    with make_session_factory(app.state.engine)() as session:
        assert session.query(OptimizationRun).count() == 0  # ON DELETE CASCADE on both backends
        assert session.query(Recommendation).count() == 0
        assert session.query(ExperimentProgress).count() == 0
    assert [item["id"] for item in client.get("/api/experiments").json()["items"]] == [other["id"]]


@pytest.mark.parametrize("status", ["queued", "running"])
def test_delete_refused_while_running(
    client: TestClient, new_experiment: Callable[..., dict[str, Any]], app: Any, status: str
) -> None:
    experiment = new_experiment()
    with make_session_factory(app.state.engine)() as session:
        row = session.get(Experiment, experiment["id"])
        assert row is not None
        row.status = status
        session.commit()
    response = client.delete(f"/api/experiments/{experiment['id']}")
    assert response.status_code == 409
    assert "cancel it" in response.json()["detail"]


