"""The service marks an experiment whose model is at chance failed, with the sentence the CLI prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.engine.test_baseline_check import at_chance_model
from tests.runner.live import TERMINAL, LiveServer, Stream, create_experiment

pytestmark = pytest.mark.slow


def test_service_marks_an_at_chance_experiment_failed(live_server: LiveServer, tmp_path: Path) -> None:
    model = at_chance_model("pytorch", tmp_path)
    with live_server.client() as client:
        exp = create_experiment(client, model, "pytorch", techniques=["ptq_int8"], epochs=1)
        stream = Stream(live_server, exp["id"])
        stream.next(timeout=20)
        assert client.post(f"/api/experiments/{exp['id']}/start").status_code == 202
        final = stream.until(lambda m: m["type"] in TERMINAL, timeout=300)
        assert final["type"] == "experiment_failed" and "no better than chance" in final["error"]
        assert not any(m["type"] == "technique_started" for m in stream.messages)
        row = client.get(f"/api/experiments/{exp['id']}").json()
        assert row["status"] == "failed" and "no better than chance" in row["error"]
