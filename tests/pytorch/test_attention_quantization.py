"""Quantized attention models run on the board runtime: Swin's window padding between quantized tensors.

XNNPACK's partitioner takes that constant pad, then refuses to compile it when the ``.pte`` is loaded
(``xnn_status_invalid_parameter``), so ptq_int8 on torchvision's Swin failed at measurement with the runtime's
"Failed to load method forward" (found by benchmarks/coverage.py on swin_t). ``to_pte`` now loads what it wrote and,
if XNNPACK refuses it, lowers again with such ops on ExecuTorch's portable kernels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgeopt.data import load_dataset
from edgeopt.pipeline import ExperimentSpec, Pipeline
from edgeopt.settings import Settings
from tests.pytorch.test_batch_free import _tiny

pytestmark = pytest.mark.slow


def test_ptq_int8_on_a_swin_model_completes_and_its_pte_classifies(tmp_path: Path) -> None:
    from edgeopt.frameworks.pytorch.runtime import load_pte

    model_file = tmp_path / "swin.pt2"
    torch.export.save(torch.export.export(_tiny("swin"), (torch.rand(1, 3, 32, 32),)), str(model_file))
    data = load_dataset("digits", seed=0)
    dataset = tmp_path / "digits.npz"
    np.savez(
        dataset, x_train=data.x_train[:96], y_train=data.y_train[:96], x_test=data.x_test[:24], y_test=data.y_test[:24]
    )
    spec = ExperimentSpec(
        framework="pytorch",
        dataset=str(dataset),
        dataset_label="digits",
        device="rpi4",
        out_dir=tmp_path / "out",
        model=model_file,
        techniques=["ptq_int8"],
        technique_configs={"ptq_int8": {"calibration_samples": 16}},
        time_budget_s=1.0,  # one search step: the point is the file, not the setting
        check_baseline=False,  # a random-init model: the point is that the quantized file runs
    )
    report = Pipeline(spec, settings=Settings(latency_seconds=0.0)).run()
    (run,) = report.runs
    assert run.status == "completed", run.error
    predict = load_pte(tmp_path / "out" / run.artifact)
    logits = predict(np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32))
    assert logits.shape == (2, 10) and np.isfinite(logits).all()
