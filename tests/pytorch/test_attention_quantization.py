"""Quantized attention models run on the board runtime: Swin's window padding between quantized tensors.

XNNPACK's partitioner takes that constant pad, then refuses to compile it when the ``.pte`` is loaded
(``xnn_status_invalid_parameter``), so ptq_int8 on torchvision's Swin failed at measurement with the runtime's
"Failed to load method forward" (found by benchmarks/coverage.py on swin_t). ``to_pte`` now loads what it wrote and,
if XNNPACK refuses it, lowers again with such ops on ExecuTorch's portable kernels.

The test drives the technique's own steps (PT2E quantization, then ``to_pte``) rather than a whole experiment: the
fault is in the lowering, and a full pipeline run (baseline export, search, measurement) cost four minutes of CI.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgeopt.data import load_dataset
from edgeopt.data.adapt import adapt
from edgeopt.frameworks.pytorch.export import to_pte
from edgeopt.frameworks.pytorch.layout import to_nchw
from edgeopt.frameworks.pytorch.ptq_int8 import quantize_int8
from edgeopt.progress import silent_reporter
from tests.pytorch.test_batch_free import _tiny

pytestmark = pytest.mark.slow


def test_an_int8_swin_lowers_to_a_pte_that_loads_and_classifies(tmp_path: Path) -> None:
    from edgeopt.frameworks.pytorch.runtime import load_pte

    torch.manual_seed(0)
    data = adapt(load_dataset("digits", seed=0), 32, 32, 3)
    program = quantize_int8(_tiny("swin").eval(), data, calibration_samples=16, reporter=silent_reporter())
    path = to_pte(program, torch.rand(1, 3, 32, 32), tmp_path / "swin_int8.pte")
    logits = load_pte(path)(to_nchw(data.x_test[:2]).numpy())
    assert logits.shape == (2, 10) and np.isfinite(logits).all()
