"""The end-to-end flow every framework must pass: create, upload, start, watch the stream, read, download."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeopt.catalog import TECHNIQUE_NAMES
from edgeopt.service.messages import ServerMessage
from tests.runner.live import TERMINAL, LiveServer, Stream, create_experiment

PROGRESS_KEYS = {"type", "experiment_id", "current_technique", "overall_progress", "metrics"}
CURRENT_KEYS = {"name", "progress_percent", "eta_seconds", "stage"}
OVERALL_KEYS = {"completed_techniques", "total_techniques", "progress_percent", "eta_seconds"}
METRIC_KEYS = {"original_accuracy", "current_accuracy", "original_size_mb", "current_size_mb"}


def run_full_flow(server: LiveServer, model: Path, framework: str, epochs: int = 1) -> dict[str, Any]:
    """Runs all seven techniques through the service; returns what the checks below need."""
    with server.client() as client:
        exp = create_experiment(client, model, framework, epochs=epochs)
        assert exp["status"] == "ready"
        stream = Stream(server, exp["id"])
        snapshot = stream.next(timeout=20)
        assert snapshot["type"] == "snapshot" and snapshot["experiment"]["status"] == "ready"
        started = client.post(f"/api/experiments/{exp['id']}/start")
        assert started.status_code == 202, started.text
        again = client.post(f"/api/experiments/{exp['id']}/start")
        assert again.status_code == 409
        final = stream.until(lambda m: m["type"] in TERMINAL, timeout=900)
        stream.close()
        results = client.get(f"/api/experiments/{exp['id']}/results").json()
        status = client.get(f"/api/experiments/{exp['id']}").json()["status"]
        downloads: dict[str, Path] = {}
        for run in results["runs"]:
            if run["status"] != "completed":
                continue
            response = client.get(f"/api/experiments/{exp['id']}/runs/{run['technique']}/download")
            assert response.status_code == 200, response.text
            assert int(response.headers["content-length"]) == run["size_bytes"]
            assert run["technique"] in response.headers["content-disposition"]
            target = server.storage / "downloads" / f"{run['technique']}{Path(run['artifact']).suffix}"
            target.parent.mkdir(exist_ok=True)
            target.write_bytes(response.content)
            downloads[run["technique"]] = target
    return {"final": final, "messages": stream.messages, "results": results, "status": status,
            "downloads": downloads}


def check_stream(outcome: dict[str, Any]) -> None:
    messages = outcome["messages"]
    assert outcome["final"]["type"] == "experiment_completed", outcome["final"]
    assert messages[-1]["type"] == "experiment_completed"
    assert outcome["status"] == "completed"
    for message in messages:  # every message is in the contract the web app's types are generated from
        ServerMessage.model_validate(message)
    progress = [m for m in messages if m["type"] == "progress_update"]
    assert progress, "no progress_update received"
    for message in progress:
        assert set(message) == PROGRESS_KEYS
        assert set(message["current_technique"]) == CURRENT_KEYS
        assert set(message["overall_progress"]) == OVERALL_KEYS
        assert set(message["metrics"]) == METRIC_KEYS
        assert message["overall_progress"]["eta_seconds"] >= 0
        assert message["current_technique"]["eta_seconds"] >= 0
    overall = [m["overall_progress"]["progress_percent"] for m in progress]
    assert overall == sorted(overall), "overall progress went backwards"
    assert overall[-1] == 100
    finished = [m for m in messages if m["type"] in ("technique_completed", "technique_failed")]
    assert sorted(m["technique"] for m in finished) == sorted(TECHNIQUE_NAMES)
    assert [m["technique"] for m in finished] == list(TECHNIQUE_NAMES)


def check_results_match_stream(outcome: dict[str, Any]) -> None:
    results = outcome["results"]
    streamed = {m["technique"]: m["run"] for m in outcome["messages"]
                if m["type"] in ("technique_completed", "technique_failed")}
    assert [run["technique"] for run in results["runs"]] == list(TECHNIQUE_NAMES)
    for run in results["runs"]:
        # The stream carries each run as it finished; the final results re-time every artifact side by side
        # (edgeopt.host_timing), so only the host latency may differ, and it must be the interleaved figure.
        streamed_run = {k: v for k, v in streamed[run["technique"]].items() if k != "latency_ms"}
        assert {k: v for k, v in run.items() if k != "latency_ms"} == streamed_run
        if run["status"] == "completed":
            assert run["latency_ms"]["method"] == "interleaved"
    assert results["baseline"]["accuracy"] > 0.9
    assert results["recommendation"]["technique"] in TECHNIQUE_NAMES
    assert outcome["final"]["report"]["runs"] == results["runs"]
