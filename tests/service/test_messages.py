"""Every WebSocket message is built through the models the web app's types are generated from.

The wire format is the one clients already read (docs/architecture.md section 7): these tests pin its field names,
so moving the builders onto pydantic models changed no key a client depends on.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from edgeopt.report import RunResult
from edgeopt.service import messages

EXPERIMENT = "e" * 32


def _message(raw: dict) -> object:
    """The model a raw message validates as (raises when the wire shape is not in the contract)."""
    return messages.ServerMessage.model_validate(raw).root


def test_progress_update_keeps_its_wire_keys_and_validates() -> None:
    raw = messages.progress_update(
        experiment_id=EXPERIMENT,
        technique="ptq_int8",
        stage="Calibrating",
        technique_fraction=0.456,
        technique_eta=12.4,
        completed=2,
        total=7,
        overall_fraction=0.35,
        overall_eta=300.6,
        baseline={"accuracy": 0.9, "size_bytes": 2_000_000},
        last_run={"accuracy": 0.88, "size_bytes": 500_000},
    )
    assert isinstance(_message(raw), messages.ProgressUpdateMessage)
    assert raw == {
        "type": "progress_update",
        "experiment_id": EXPERIMENT,
        "current_technique": {"name": "ptq_int8", "progress_percent": 46, "eta_seconds": 12, "stage": "Calibrating"},
        "overall_progress": {
            "completed_techniques": 2,
            "total_techniques": 7,
            "progress_percent": 35,
            "eta_seconds": 301,
        },
        "metrics": {
            "original_accuracy": 0.9,
            "current_accuracy": 0.88,
            "original_size_mb": 2.0,
            "current_size_mb": 0.5,
        },
    }


def test_a_failed_run_is_a_technique_failed_message_carrying_its_error() -> None:
    failed = RunResult(technique="qat_int8", status="failed", error="The model has no Conv2d layers to quantize.")
    raw = messages.technique_message(EXPERIMENT, failed)
    assert raw["type"] == "technique_failed" and raw["technique"] == "qat_int8"
    assert raw["run"]["error"] == failed.error
    assert isinstance(_message(raw), messages.TechniqueFailedMessage)
    done = messages.technique_message(EXPERIMENT, RunResult(technique="ptq_int8", status="completed", accuracy=0.9))
    assert done["type"] == "technique_completed" and isinstance(_message(done), messages.TechniqueCompletedMessage)


def test_end_messages() -> None:
    failed = messages.experiment_failed(EXPERIMENT, "The worker stopped; start it again.")
    assert failed == {"type": "experiment_failed", "experiment_id": EXPERIMENT, "error": failed["error"]}
    assert messages.experiment_cancelled(EXPERIMENT) == {"type": "experiment_cancelled", "experiment_id": EXPERIMENT}


def test_a_message_outside_the_contract_is_refused() -> None:
    with pytest.raises(ValidationError):
        _message({"type": "technique_failed", "experiment_id": EXPERIMENT, "technique": "x", "error": "no run"})
    with pytest.raises(ValidationError):
        _message({"type": "lagged"})


def test_the_socket_snapshot_is_a_contract_message(client: TestClient) -> None:
    created = client.post("/api/experiments", json={"framework": "pytorch", "dataset": "digits", "device": "rpi4"})
    experiment_id = created.json()["id"]
    with client.websocket_connect(f"/ws/experiments/{experiment_id}") as socket:
        raw = socket.receive_json()
    snapshot = _message(raw)
    assert isinstance(snapshot, messages.SnapshotMessage)
    assert set(raw) == {"type", "experiment_id", "experiment", "baseline", "runs", "progress", "recommendation"}
    assert raw["experiment"]["status"] == "created" and raw["runs"] == [] and raw["progress"] is None


def test_catalog_carries_the_services_statuses_and_limits(client: TestClient) -> None:
    from edgeopt.service.db.models import ACTIVE_STATUSES, EXPERIMENT_STATUSES
    from edgeopt.strength_search import MAX_TIME_BUDGET_S
    from edgeopt.techniques import MAX_EPOCHS

    body = client.get("/api/catalog").json()
    assert body["statuses"]["all"] == list(EXPERIMENT_STATUSES)
    assert set(body["statuses"]["active"]) == ACTIVE_STATUSES
    assert body["limits"] == {"max_epochs": MAX_EPOCHS, "max_time_budget_s": MAX_TIME_BUDGET_S}
    too_many = {"framework": "pytorch", "dataset": "digits", "device": "rpi4", "epochs": MAX_EPOCHS + 1}
    assert client.post("/api/experiments", json=too_many).status_code == 422
