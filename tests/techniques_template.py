"""What every technique must show, whatever the framework: one abstract test class, subclassed per framework.

A subclass supplies three fixtures and one hook (this module imports neither torch nor TensorFlow; it builds them
with ``measure_baseline`` and ``run_technique`` below):

- ``technique`` (parametrized over the technique names it covers),
- ``technique_result``: a ``TechniqueResult`` for that technique, measured by the engine's own
  ``pipeline.measure_output`` (the path the report uses),
- ``eval_data``: the adapted ``Dataset`` the technique and the measurement used,
- ``run_artifact(artifact, output, images) -> logits``: loads the file fresh in its board runtime and runs it.

The checks then compare what the engine reports with what the file on disk really does, so a technique cannot
report a number its artifact does not back up.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from edgeopt.data.dataset import Dataset
from edgeopt.expectations import EXPECTATIONS, shortfalls
from edgeopt.frameworks import LoadedModel, get_backend
from edgeopt.pipeline import measure_output
from edgeopt.progress import ProgressEvent, StageReporter
from edgeopt.settings import get_settings
from edgeopt.technique_specs import SPECS, technique_spec
from edgeopt.techniques import TechniqueContext, TechniqueOutput, get_technique, make_config


def implemented(framework: str) -> tuple[str, ...]:
    """The techniques the catalog offers on ``framework``: each subclass runs every one of them."""
    return tuple(spec.name for spec in SPECS if framework in spec.implementations)


@dataclass
class Metrics:
    """The engine's measurement of one artifact (the fields of ``pipeline.Measured`` the contract checks)."""

    accuracy: float
    size_bytes: int
    compressed_size_bytes: int
    params: int
    flops: int
    sparsity: float
    latency_ms: float

    @classmethod
    def of(cls, measured: Any) -> Metrics:
        return cls(
            accuracy=measured.accuracy,
            size_bytes=measured.size_bytes,
            compressed_size_bytes=measured.compressed_size_bytes,
            params=measured.params,
            flops=measured.flops,
            sparsity=measured.sparsity,
            latency_ms=measured.latency.host,
        )


@dataclass
class TechniqueResult:
    technique: str
    output: TechniqueOutput
    measured: Metrics
    baseline: Metrics
    baseline_artifact: Path
    stages: list[tuple[str, float]]  # progress (stage name, fraction) as the technique reported it


def measure_baseline(
    framework: str, loaded: LoadedModel, data: Dataset, work_dir: Path
) -> tuple[TechniqueOutput, Metrics]:
    """The baseline exported and measured exactly as the pipeline does it."""
    backend = get_backend(framework)
    output = backend.export_baseline(loaded, data, work_dir)
    return output, Metrics.of(measure_output(backend, loaded, output, data, get_settings()))


def run_technique(
    framework: str,
    technique: str,
    loaded: LoadedModel,
    data: Dataset,
    work_dir: Path,
    baseline: tuple[TechniqueOutput, Metrics],
    overrides: dict[str, Any] | None = None,
) -> TechniqueResult:
    """Apply one technique, record the progress it reports, and measure its artifact through the pipeline's path."""
    stages: list[tuple[str, float]] = []

    def record(event: ProgressEvent) -> None:
        stages.append((event.stage, event.fraction))

    ctx = TechniqueContext(model=loaded, data=data, work_dir=work_dir, reporter=StageReporter(technique, 0, 1, record))
    output = get_technique(technique, framework).apply(ctx, make_config(technique, overrides))
    measured = measure_output(get_backend(framework), loaded, output, data, get_settings())
    base_output, base_metrics = baseline
    return TechniqueResult(
        technique=technique,
        output=output,
        measured=Metrics.of(measured),
        baseline=base_metrics,
        baseline_artifact=Path(base_output.artifact),
        stages=stages,
    )


class TechniqueContract:
    """Subclass as ``Test<Framework>Techniques`` and provide the fixtures and hook named in the module docstring."""

    framework: ClassVar[str]

    def run_artifact(self, artifact: Path, output: TechniqueOutput, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # --- the artifact is real and is what the report points at -------------------------------------------------

    def test_artifact_is_a_file_in_the_work_folder(self, technique_result: TechniqueResult) -> None:
        artifact = Path(technique_result.output.artifact)
        assert artifact.is_file()
        assert artifact.stem == technique_result.technique
        assert artifact.parent == technique_result.baseline_artifact.parent
        for path in technique_result.output.formats.values():
            assert Path(path).is_file() and Path(path).stat().st_size > 0

    def test_size_is_the_files_size(self, technique_result: TechniqueResult) -> None:
        artifact = Path(technique_result.output.artifact)
        assert technique_result.measured.size_bytes == os.path.getsize(artifact)
        assert technique_result.measured.compressed_size_bytes == len(gzip.compress(artifact.read_bytes(), 9))

    def test_artifact_reloads_and_runs(self, technique_result: TechniqueResult, eval_data: Dataset) -> None:
        images = eval_data.x_test[:8]
        logits = self.run_artifact(Path(technique_result.output.artifact), technique_result.output, images)
        assert logits.shape == (len(images), eval_data.num_classes)
        assert np.isfinite(logits).all()

    def test_accuracy_is_what_the_measurement_says(self, technique_result: TechniqueResult, eval_data: Dataset) -> None:
        logits = self.run_artifact(Path(technique_result.output.artifact), technique_result.output, eval_data.x_test)
        accuracy = float((logits.argmax(axis=1) == eval_data.y_test).mean())
        assert accuracy == pytest.approx(technique_result.measured.accuracy, abs=1e-9)
        assert accuracy > 2.0 / eval_data.num_classes, "the artifact predicts no better than chance"

    # --- what the result claims --------------------------------------------------------------------------------

    def test_precision_and_notes(self, technique_result: TechniqueResult) -> None:
        assert technique_result.output.precision == technique_spec(technique_result.technique).precision
        assert len(technique_result.output.notes) > 40, "notes must say what was done, in a sentence"

    def test_progress_is_reported_in_order(self, technique_result: TechniqueResult) -> None:
        fractions = [fraction for _, fraction in technique_result.stages]
        assert len(fractions) >= 2, "a technique reports its stages as it goes"
        assert fractions == sorted(fractions)
        assert all(name.strip() for name, _ in technique_result.stages)

    def test_meets_its_targets(self, technique_result: TechniqueResult) -> None:
        """The issue's table, checked by the same function that writes shortfalls into a user's result notes."""
        expected = EXPECTATIONS[self.framework][technique_result.technique]
        misses = shortfalls(expected, technique_result.baseline, technique_result.measured)
        assert not misses, f"{technique_result.technique}: " + "; ".join(misses)
