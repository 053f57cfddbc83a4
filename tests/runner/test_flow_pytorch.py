"""Issue 5's integration test for PyTorch: the whole flow through a real service and real workers."""

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


def test_pytorch_experiment_end_to_end(live_server: LiveServer, torch_demo_file: Path, tmp_path: Path) -> None:
    outcome = run_full_flow(live_server, torch_demo_file, "pytorch")
    check_stream(outcome)
    check_results_match_stream(outcome)

    backend = get_backend("pytorch")
    spec = ExperimentSpec(framework="pytorch", dataset="digits", device="rpi4", out_dir=tmp_path,
                          model=torch_demo_file)
    data, _ = load_inputs(backend, spec, Settings(storage_dir=tmp_path))
    for run in outcome["results"]["runs"]:
        if run["status"] != "completed":
            continue
        path = outcome["downloads"][run["technique"]]
        predict = backend.artifact_predictor(path, TechniqueOutput(artifact=path, precision=run["precision"]))
        assert accuracy(predict, data.x_test, data.y_test) == pytest.approx(run["accuracy"], abs=1e-9)
