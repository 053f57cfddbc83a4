"""The cross-framework technique contract (tests/techniques_template.py), run for PyTorch on the demo CNN.

Each of the seven techniques runs once per module on the session's trained demo model (a ``.pt2``), writes its
``.pte`` next to the baseline's, and is measured by ``pipeline.measure_output``, the path the report uses; the
contract then reloads every file in ExecuTorch and checks the report against it. Epochs are cut down from the
configs' defaults to keep the module short on two cores; the targets are the issue's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from edgeopt.data.dataset import Dataset
from edgeopt.frameworks import LoadedModel
from edgeopt.frameworks.pytorch.layout import to_nchw
from edgeopt.frameworks.pytorch.pruning import prunable_weights
from edgeopt.frameworks.pytorch.runtime import load_pte
from edgeopt.techniques import TechniqueOutput
from tests.techniques_template import (
    Metrics,
    TechniqueContract,
    TechniqueResult,
    implemented,
    measure_baseline,
    run_technique,
)

# Shorter training than the defaults keeps the module short; the demo CNN recovers within these.
OVERRIDES: dict[str, dict[str, Any]] = {
    "prune_unstructured": {"epochs": 1},
    "prune_structured": {"epochs": 2},
    "distillation": {"epochs": 2},
    "qat_int8": {"epochs": 1},
    "hybrid_prune_int8": {"epochs": 2},
}


def _state(loaded: LoadedModel) -> dict[str, torch.Tensor]:
    model = loaded.model
    state = model.state_dict if isinstance(model, torch.export.ExportedProgram) else model.state_dict()
    return {name: value.detach().clone() for name, value in state.items()}


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("torch_techniques")


@pytest.fixture(scope="module")
def source_state(torch_demo: LoadedModel) -> dict[str, torch.Tensor]:
    """The demo model's weights before any technique ran."""
    return _state(torch_demo)


@pytest.fixture(scope="module")
def baseline(
    torch_demo: LoadedModel, digits32: Dataset, work_dir: Path, source_state: dict[str, torch.Tensor]
) -> tuple[TechniqueOutput, Metrics]:
    return measure_baseline("pytorch", torch_demo, digits32, work_dir)


@pytest.fixture(scope="module")
def results() -> dict[str, TechniqueResult]:
    return {}


@pytest.fixture(scope="module", params=implemented("pytorch"))
def technique(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def eval_data(digits32: Dataset) -> Dataset:
    return digits32


@pytest.fixture
def technique_result(
    technique: str,
    torch_demo: LoadedModel,
    digits32: Dataset,
    work_dir: Path,
    baseline: tuple[TechniqueOutput, Metrics],
    results: dict[str, TechniqueResult],
) -> TechniqueResult:
    if technique not in results:
        results[technique] = run_technique(
            "pytorch", technique, torch_demo, digits32, work_dir, baseline, OVERRIDES.get(technique)
        )
    return results[technique]


def _zero_words(path: Path) -> int:
    """Aligned 4-byte words holding an FP32 zero: zeros survive lowering if this count grows.

    The sign bit is ignored: a pruning mask times a negative weight gives -0.0 (bytes 00 00 00 80), still a zero.
    """
    raw = path.read_bytes()
    words = np.frombuffer(raw[: len(raw) // 4 * 4], dtype=np.uint32)
    return int(np.count_nonzero((words & 0x7FFFFFFF) == 0))


class TestPyTorchTechniques(TechniqueContract):
    framework = "pytorch"

    def run_artifact(self, artifact: Path, output: TechniqueOutput, images: np.ndarray) -> np.ndarray:
        return load_pte(artifact, threads=1)(to_nchw(images).numpy())

    def test_the_source_model_is_left_untouched(
        self, technique_result: TechniqueResult, torch_demo: LoadedModel, source_state: dict[str, torch.Tensor]
    ) -> None:
        """Techniques work on copies; the loaded model (shared by every run of an experiment) keeps its weights."""
        after = _state(torch_demo)
        assert after.keys() == source_state.keys()
        for name, value in source_state.items():
            assert torch.equal(after[name], value), f"{technique_result.technique} changed {name} of the source"

    @pytest.mark.parametrize("technique", ["prune_unstructured"], indirect=True)
    def test_unstructured_zeros_survive_lowering(self, technique_result: TechniqueResult) -> None:
        weights = prunable_weights(technique_result.output.model)
        zeroed = sum(int((getattr(layer, name) == 0).sum()) for layer, name in weights)
        total = sum(getattr(layer, name).numel() for layer, name in weights)
        assert zeroed / total == pytest.approx(0.5, abs=0.01)
        gained = _zero_words(Path(technique_result.output.artifact)) - _zero_words(technique_result.baseline_artifact)
        assert gained >= 0.95 * zeroed, "the .pte lost zeros in lowering (e.g. batch-norm folding made them dense)"
