"""The cross-framework technique contract (tests/techniques_template.py), run for TensorFlow on the demo Keras CNN.

Each technique runs once per module on the session's trained demo model, writes its ``.tflite`` into the same work
folder as the baseline, and is measured by ``pipeline.measure_output``, the path the report uses. Epochs are the
configs' defaults cut down where the default would make the suite slow; the targets are the issue's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeopt.data.dataset import Dataset
from edgeopt.frameworks import LoadedModel
from edgeopt.frameworks.tensorflow.runtime import load_tflite
from edgeopt.techniques import TechniqueOutput
from tests.techniques_template import (
    Metrics,
    TechniqueContract,
    TechniqueResult,
    implemented,
    measure_baseline,
    run_technique,
)

# Shorter training than the defaults where it keeps the targets; the pruning techniques keep their defaults (at 3
# epochs structured pruning sat right at its 1.5-point limit on the demo model) and distillation its 8 epochs.
OVERRIDES: dict[str, dict[str, Any]] = {"qat_int8": {"epochs": 1}}


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tf_techniques")


@pytest.fixture(scope="module")
def baseline(keras_demo: LoadedModel, digits_keras: Dataset, work_dir: Path) -> tuple[TechniqueOutput, Metrics]:
    return measure_baseline("tensorflow", keras_demo, digits_keras, work_dir)


@pytest.fixture(scope="module")
def results() -> dict[str, TechniqueResult]:
    return {}


@pytest.fixture(scope="module", params=implemented("tensorflow"))
def technique(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def eval_data(digits_keras: Dataset) -> Dataset:
    return digits_keras


@pytest.fixture
def technique_result(
    technique: str,
    keras_demo: LoadedModel,
    digits_keras: Dataset,
    work_dir: Path,
    baseline: tuple[TechniqueOutput, Metrics],
    results: dict[str, TechniqueResult],
) -> TechniqueResult:
    if technique not in results:
        results[technique] = run_technique(
            "tensorflow", technique, keras_demo, digits_keras, work_dir, baseline, OVERRIDES.get(technique)
        )
    return results[technique]


class TestTensorFlowTechniques(TechniqueContract):
    framework = "tensorflow"

    def run_artifact(self, artifact: Path, output: TechniqueOutput, images: np.ndarray) -> np.ndarray:
        return load_tflite(artifact, threads=1)(images)

    def test_the_source_model_is_left_untouched(
        self, technique_result: TechniqueResult, keras_demo: LoadedModel
    ) -> None:
        """Techniques build new models; the loaded one (shared by every run of an experiment) keeps its filters."""
        widths = [layer.filters for layer in keras_demo.model.layers if hasattr(layer, "filters")]
        assert widths == [32, 64, 128]
