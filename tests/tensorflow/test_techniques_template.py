"""The cross-framework technique contract (tests/techniques_template.py), run for TensorFlow on the demo Keras CNN.

Each technique runs once per module on the session's trained demo model, writes its ``.tflite`` into the same work
folder as the baseline, and is measured by ``pipeline.measure_output``, the path the report uses. Epochs are the
configs' defaults cut down where the default would make the suite slow; the targets are the issue's.
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeopt.data.dataset import Dataset
from edgeopt.frameworks import LoadedModel
from edgeopt.frameworks.tensorflow.backend import TensorFlowBackend
from edgeopt.frameworks.tensorflow.runtime import load_tflite
from edgeopt.pipeline import measure_output
from edgeopt.progress import ProgressEvent, StageReporter
from edgeopt.settings import get_settings
from edgeopt.techniques import REGISTRY, TechniqueOutput, get_technique, make_config
from tests.techniques_template import TARGETS, Metrics, TechniqueContract, TechniqueResult

TECHNIQUES = (
    "ptq_int8",
    "ptq_int4",
    "prune_unstructured",
    "prune_structured",
    "distillation",
    "qat_int8",
    "hybrid_prune_int8",
)
# Shorter training than the defaults where it keeps the targets; the pruning techniques keep their defaults (at 3
# epochs structured pruning sat right at its 1.5-point limit on the demo model) and distillation its 8 epochs.
OVERRIDES: dict[str, dict[str, Any]] = {"qat_int8": {"epochs": 1}}
# The TensorFlow targets where they differ from the shared table (sizes against the FP32 .tflite).
TF_TARGETS = {
    **TARGETS,
    "ptq_int8": replace(TARGETS["ptq_int8"], min_compression=3.5),
    "qat_int8": replace(TARGETS["qat_int8"], min_compression=3.5),
    "hybrid_prune_int8": replace(TARGETS["hybrid_prune_int8"], min_compression=6.0),
}


def _implemented(technique: str) -> bool:
    module = REGISTRY[(technique, "tensorflow")].split(":")[0]
    return importlib.util.find_spec(module) is not None


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tf_techniques")


@pytest.fixture(scope="module")
def baseline(keras_demo: LoadedModel, digits_keras: Dataset, work_dir: Path) -> tuple[TechniqueOutput, Metrics]:
    backend = TensorFlowBackend()
    output = backend.export_baseline(keras_demo, digits_keras, work_dir)
    return output, Metrics.of(measure_output(backend, keras_demo, output, digits_keras, get_settings()))


@pytest.fixture(scope="module")
def results() -> dict[str, TechniqueResult]:
    return {}


@pytest.fixture(scope="module", params=TECHNIQUES)
def technique(request: pytest.FixtureRequest) -> str:
    if not _implemented(request.param):
        pytest.skip(f"{request.param} for TensorFlow is not in this checkout yet")
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
        from edgeopt.techniques import TechniqueContext

        stages: list[tuple[str, float]] = []

        def record(event: ProgressEvent) -> None:
            stages.append((event.stage, event.fraction))

        ctx = TechniqueContext(
            model=keras_demo, data=digits_keras, work_dir=work_dir, reporter=StageReporter(technique, 0, 1, record)
        )
        output = get_technique(technique, "tensorflow").apply(ctx, make_config(technique, OVERRIDES.get(technique)))
        measured = measure_output(TensorFlowBackend(), keras_demo, output, digits_keras, get_settings())
        base_output, base_metrics = baseline
        results[technique] = TechniqueResult(
            technique=technique,
            output=output,
            measured=Metrics.of(measured),
            baseline=base_metrics,
            baseline_artifact=Path(base_output.artifact),
            stages=stages,
        )
    return results[technique]


class TestTensorFlowTechniques(TechniqueContract):
    framework = "tensorflow"
    targets = TF_TARGETS

    def run_artifact(self, artifact: Path, output: TechniqueOutput, images: np.ndarray) -> np.ndarray:
        return load_tflite(artifact, threads=1)(images)

    def test_the_source_model_is_left_untouched(
        self, technique_result: TechniqueResult, keras_demo: LoadedModel
    ) -> None:
        """Techniques build new models; the loaded one (shared by every run of an experiment) keeps its filters."""
        widths = [layer.filters for layer in keras_demo.model.layers if hasattr(layer, "filters")]
        assert widths == [32, 64, 128]
