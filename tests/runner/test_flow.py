"""Issue 5's integration test, for each framework: the whole flow through a real service and real workers."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeopt.frameworks import get_backend
from edgeopt.measure import accuracy
from edgeopt.pipeline import ExperimentSpec, load_inputs
from edgeopt.settings import Settings
from edgeopt.techniques import TechniqueOutput
from tests.runner.flow import check_results_match_stream, check_stream, run_full_flow
from tests.runner.live import LiveServer

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("framework", "demo_fixture"), [("pytorch", "torch_demo_file"), ("tensorflow", "keras_demo_file")]
)
def test_experiment_end_to_end(
    framework: str, demo_fixture: str, live_server: LiveServer, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    model: Path = request.getfixturevalue(demo_fixture)
    outcome = run_full_flow(live_server, model, framework)
    check_stream(outcome)
    check_results_match_stream(outcome)

    # Every downloaded artifact, run again here in its board runtime, gives the accuracy the report states.
    backend = get_backend(framework)
    spec = ExperimentSpec(framework=framework, dataset="digits", device="rpi4", out_dir=tmp_path, model=model)
    data, _ = load_inputs(backend, spec, Settings(storage_dir=tmp_path))
    for run in outcome["results"]["runs"]:
        if run["status"] != "completed":
            continue
        path = outcome["downloads"][run["technique"]]
        predict = backend.artifact_predictor(path, TechniqueOutput(artifact=path, precision=run["precision"]))
        assert accuracy(predict, data.x_test, data.y_test) == pytest.approx(run["accuracy"], abs=1e-9)
