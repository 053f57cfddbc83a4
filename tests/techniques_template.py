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

from edgeopt.catalog import TECHNIQUE_NAMES
from edgeopt.data.dataset import Dataset
from edgeopt.frameworks import LoadedModel, get_backend
from edgeopt.pipeline import measure_output
from edgeopt.progress import ProgressEvent, StageReporter
from edgeopt.settings import get_settings
from edgeopt.techniques import TechniqueContext, TechniqueOutput, get_technique, make_config

TECHNIQUES = TECHNIQUE_NAMES

PRECISION = {
    "ptq_int8": "int8",
    "ptq_int4": "int4",
    "prune_unstructured": "fp32",
    "prune_structured": "fp32",
    "distillation": "fp32",
    "qat_int8": "int8",
    "hybrid_prune_int8": "int8",
}


@dataclass(frozen=True)
class Target:
    """A technique's promises from the issue's target table; ``None`` means "not promised"."""

    min_compression: float | None = None  # baseline size / artifact size
    max_drop_points: float | None = None  # accuracy points below the baseline
    min_gzip_ratio: float | None = None  # baseline gzip size / artifact gzip size
    dense_file: bool = False  # the file must NOT shrink (unstructured zeros are stored densely)
    sparsity: tuple[float, float] | None = None  # (low, high) fraction of zero weights
    min_flops_ratio: float | None = None  # baseline FLOPs / result FLOPs
    max_params_fraction: float | None = None  # result params / baseline params


# The targets. Framework test classes may relax the accuracy ones for their short test fine-tunes.
TARGETS: dict[str, Target] = {
    "ptq_int8": Target(min_compression=3.8, max_drop_points=0.5),
    "ptq_int4": Target(min_compression=6.5, max_drop_points=1.5),
    "prune_unstructured": Target(max_drop_points=1.0, min_gzip_ratio=1.6, dense_file=True, sparsity=(0.49, 0.51)),
    "prune_structured": Target(min_compression=2.0, max_drop_points=1.5, min_flops_ratio=2.0),
    "distillation": Target(min_compression=2.0, max_drop_points=2.0, max_params_fraction=0.5),
    "qat_int8": Target(min_compression=3.8, max_drop_points=1.0),
    "hybrid_prune_int8": Target(min_compression=7.0, max_drop_points=2.0),
}


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
    targets: ClassVar[dict[str, Target]] = TARGETS

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
        assert technique_result.output.precision == PRECISION[technique_result.technique]
        assert len(technique_result.output.notes) > 40, "notes must say what was done, in a sentence"

    def test_progress_is_reported_in_order(self, technique_result: TechniqueResult) -> None:
        fractions = [fraction for _, fraction in technique_result.stages]
        assert len(fractions) >= 2, "a technique reports its stages as it goes"
        assert fractions == sorted(fractions)
        assert all(name.strip() for name, _ in technique_result.stages)

    def test_meets_its_targets(self, technique_result: TechniqueResult) -> None:
        target = self.targets[technique_result.technique]
        result, base = technique_result.measured, technique_result.baseline
        misses = []
        compression = base.size_bytes / result.size_bytes
        if target.min_compression is not None and compression < target.min_compression:
            misses.append(f"size ratio {compression:.2f} < {target.min_compression}")
        if target.dense_file and not 0.9 <= compression <= 1.1:
            misses.append(f"a dense file should keep its size, ratio {compression:.2f}")
        drop = 100.0 * (base.accuracy - result.accuracy)
        if target.max_drop_points is not None and drop > target.max_drop_points:
            misses.append(f"accuracy drop {drop:.2f} points > {target.max_drop_points}")
        gzip_ratio = base.compressed_size_bytes / result.compressed_size_bytes
        if target.min_gzip_ratio is not None and gzip_ratio < target.min_gzip_ratio:
            misses.append(f"gzip size ratio {gzip_ratio:.2f} < {target.min_gzip_ratio}")
        if target.sparsity is not None and not target.sparsity[0] <= result.sparsity <= target.sparsity[1]:
            misses.append(f"sparsity {result.sparsity:.3f} outside {target.sparsity}")
        if target.min_flops_ratio is not None and base.flops / max(1, result.flops) < target.min_flops_ratio:
            misses.append(f"FLOPs ratio {base.flops / max(1, result.flops):.2f} < {target.min_flops_ratio}")
        if target.max_params_fraction is not None and result.params > target.max_params_fraction * base.params:
            misses.append(f"params {result.params} > {target.max_params_fraction} x {base.params}")
        assert not misses, f"{technique_result.technique}: " + "; ".join(misses)
