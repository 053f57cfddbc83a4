"""ptq_int8, ptq_int4 and qat_int8 on the demo CNN: the .pte reloads and runs, and meets its size/accuracy targets.

Every figure is measured by running the artifact file in the ExecuTorch runtime, against the FP32 .pte baseline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgeopt.data.dataset import Dataset
from edgeopt.frameworks import LoadedModel
from edgeopt.frameworks.pytorch.ptq_int4 import PtqInt4, pack_int4, quantize_rows, unpack_int4
from edgeopt.frameworks.pytorch.ptq_int8 import PtqInt8
from edgeopt.frameworks.pytorch.qat import QatInt8
from edgeopt.progress import StageReporter, silent_reporter
from edgeopt.techniques import PtqInt4Config, PtqInt8Config, QatInt8Config, TechniqueContext, TechniqueOutput

from .conftest import pte_accuracy


def _run(technique, config, torch_demo: LoadedModel, digits32: Dataset, work: Path, reporter=None) -> TechniqueOutput:
    work.mkdir(parents=True, exist_ok=True)
    ctx = TechniqueContext(torch_demo, digits32, work, reporter or silent_reporter(technique.name))
    return technique.apply(ctx, config)


@pytest.fixture(scope="module")
def ptq8(torch_demo: LoadedModel, digits32: Dataset, tmp_work: Path) -> TechniqueOutput:
    return _run(PtqInt8(), PtqInt8Config(), torch_demo, digits32, tmp_work / "ptq_int8")


@pytest.fixture(scope="module")
def ptq4(torch_demo: LoadedModel, digits32: Dataset, tmp_work: Path) -> TechniqueOutput:
    return _run(PtqInt4(), PtqInt4Config(), torch_demo, digits32, tmp_work / "ptq_int4")


@pytest.fixture(scope="module")
def qat_events(torch_demo: LoadedModel, digits32: Dataset, tmp_work: Path) -> tuple[TechniqueOutput, list]:
    events: list = []
    reporter = StageReporter("qat_int8", 0, 1, events.append)
    output = _run(QatInt8(), QatInt8Config(epochs=1), torch_demo, digits32, tmp_work / "qat_int8", reporter)
    return output, events


def _ratio(baseline: TechniqueOutput, output: TechniqueOutput) -> float:
    return baseline.artifact.stat().st_size / output.artifact.stat().st_size


def _drop_points(baseline_accuracy: float, artifact: Path, data: Dataset) -> float:
    return 100.0 * (baseline_accuracy - pte_accuracy(artifact, data))


def test_ptq_int8_meets_its_targets(ptq8, torch_baseline, baseline_accuracy, digits32) -> None:
    assert ptq8.artifact.name == "ptq_int8.pte" and ptq8.precision == "int8"
    assert _ratio(torch_baseline, ptq8) >= 3.8
    assert _drop_points(baseline_accuracy, ptq8.artifact, digits32) <= 0.5


def test_quantized_pt2_holds_no_fp32_weights(ptq8, torch_baseline, digits32) -> None:
    import torchao.quantization.pt2e  # noqa: F401  registers the quantized ops the program refers to

    pt2 = ptq8.formats["pt2"]
    assert pt2.stat().st_size < 0.5 * torch_baseline.formats["pt2"].stat().st_size
    program = torch.export.load(str(pt2))
    float_weights = [v for v in program.state_dict.values() if v.dtype == torch.float32 and v.dim() == 4]
    assert not float_weights
    logits = program.module()(torch.from_numpy(digits32.x_test[:1].transpose(0, 3, 1, 2).copy()))
    assert logits.shape == (1, 10)


def test_ptq_int4_meets_its_targets(ptq4, torch_baseline, baseline_accuracy, digits32) -> None:
    assert ptq4.artifact.name == "ptq_int4.pte"
    assert _ratio(torch_baseline, ptq4) >= 6.5
    assert _drop_points(baseline_accuracy, ptq4.artifact, digits32) <= 1.5
    assert ptq4.precision == "int4" and "XNNPACK" in ptq4.notes and "packed two per byte" in ptq4.notes


def test_grouped_int4_runs_and_says_it_computes_in_fp32(
    torch_demo, digits32, tmp_work, torch_baseline, baseline_accuracy
) -> None:
    output = _run(PtqInt4(), PtqInt4Config(group_size=32), torch_demo, digits32, tmp_work / "ptq_int4_g32")
    assert output.precision == "fp32" and "group of 32 inputs" in output.notes and "FP32" in output.notes
    assert _ratio(torch_baseline, output) >= 5.0  # 4 bits + one FP32 scale per 32 weights
    assert _drop_points(baseline_accuracy, output.artifact, digits32) <= 1.5


def test_int4_packing_round_trips_exactly() -> None:
    torch.manual_seed(0)
    weight = torch.randn(6, 3, 3, 3)  # 27 inputs per row: odd, so the last byte is half padding
    codes, scales = quantize_rows(weight, group_size=None)
    assert codes.min() >= -8 and codes.max() <= 7
    packed = pack_int4(codes)
    assert packed.dtype == torch.uint8 and packed.shape == (6, 14)
    restored = unpack_int4(packed, scales, list(weight.shape), codes.shape[1])
    expected = (codes[:, :27].float() * scales).reshape(weight.shape)
    torch.testing.assert_close(restored, expected)
    assert float((restored - weight).norm() / weight.norm()) < 0.15


def test_int4_groups_give_each_group_its_scale() -> None:
    weight = torch.cat([torch.full((1, 16), 0.01), torch.full((1, 16), 10.0)], dim=1)
    codes, scales = quantize_rows(weight, group_size=16)
    assert scales.shape == (1, 2)
    restored = unpack_int4(pack_int4(codes), scales, [1, 32], 16)
    torch.testing.assert_close(restored, weight, rtol=1e-5, atol=1e-7)


def test_qat_int8_meets_its_targets_and_reports_progress(
    qat_events, ptq8, torch_baseline, baseline_accuracy, digits32
) -> None:
    output, events = qat_events
    assert output.precision == "int8" and output.formats["pt2"].is_file()
    assert _ratio(torch_baseline, output) >= 3.8
    qat_drop = _drop_points(baseline_accuracy, output.artifact, digits32)
    assert qat_drop <= _drop_points(baseline_accuracy, ptq8.artifact, digits32) + 0.3
    stages = [e.stage for e in events]
    assert any(s.startswith("Quantization-aware fine-tuning (epoch 1 of 1)") for s in stages)
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions) and len(fractions) >= 5


def test_techniques_leave_the_loaded_model_unchanged(ptq8, qat_events, torch_demo, digits32, tmp_work) -> None:
    """QAT trains a copy: the techniques after it must start from the original weights."""
    output = _run(PtqInt8(), PtqInt8Config(), torch_demo, digits32, tmp_work / "ptq_int8_again")
    assert output.artifact.read_bytes() == ptq8.artifact.read_bytes()


def test_pte_outputs_are_close_to_the_float_model(ptq8, torch_baseline, digits32) -> None:
    images = digits32.x_test[:16]
    from edgeopt.frameworks.pytorch.backend import PyTorchBackend

    backend = PyTorchBackend()
    fp32 = backend.artifact_predictor(torch_baseline.artifact, torch_baseline)(images)
    int8 = backend.artifact_predictor(ptq8.artifact, ptq8)(images)
    assert np.mean(fp32.argmax(1) == int8.argmax(1)) >= 0.9
    assert np.abs(int8 - fp32).max() < 0.25 * np.abs(fp32).max()
