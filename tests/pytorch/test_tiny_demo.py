"""The tiny demo (``edgeopt demo-model --tiny``) is there to show trade-offs: it scores well on digits, and the same
compression the reference demo absorbs without losing a point costs it accuracy.

Accuracies are measured the pipeline's way, on the ExecuTorch artifacts (tests/techniques_template.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeopt.data.dataset import Dataset
from edgeopt.frameworks import LoadedModel, ModelSource
from tests.techniques_template import measure_baseline, run_technique

pytestmark = pytest.mark.slow
ALL_FOUR_BITS = {"int8_layers": 0}  # no layer kept at 8 bits, no search: the same file for any accuracy budget


@pytest.fixture(scope="module")
def tiny_demo(tmp_work: Path, digits32: Dataset) -> LoadedModel:
    from edgeopt.frameworks.pytorch.backend import PyTorchBackend

    path = PyTorchBackend().demo_model(tmp_work / "tiny.pt2", seed=0, tiny=True)
    return PyTorchBackend().load(ModelSource(path=path), digits32)


def test_the_tiny_demo_is_narrow_and_still_accurate(tiny_demo: LoadedModel, digits32: Dataset, tmp_work: Path) -> None:
    from edgeopt.frameworks.pytorch.demo import TINY_WIDTHS

    convs = [m for m in tiny_demo.model.modules() if type(m).__name__ == "Conv2d"]
    assert tuple(c.out_channels for c in convs) == TINY_WIDTHS
    _, metrics = measure_baseline("pytorch", tiny_demo, digits32, tmp_work / "tiny_baseline")
    assert metrics.accuracy >= 0.95


def test_int4_costs_the_tiny_demo_points_the_reference_keeps(
    tiny_demo: LoadedModel, torch_demo: LoadedModel, digits32: Dataset, tmp_work: Path
) -> None:
    drops = {}
    for name, loaded in (("tiny", tiny_demo), ("reference", torch_demo)):
        baseline = measure_baseline("pytorch", loaded, digits32, tmp_work / f"{name}_int4_base")
        result = run_technique(
            "pytorch", "ptq_int4", loaded, digits32, tmp_work / f"{name}_int4", baseline, ALL_FOUR_BITS
        )
        drops[name] = 100 * (baseline[1].accuracy - result.measured.accuracy)
    # Measured on 2026-12-05 (seed 0): the tiny demo lost 1.1 points (4 of 360 test images), the reference 0.3.
    # The bounds leave a test image or two of slack for another CPU's rounding: a visible loss (at least two images)
    # where the reference keeps its accuracy (under a point), and more than the reference's.
    assert drops["reference"] < 1.0, drops
    assert drops["tiny"] >= 0.5 and drops["tiny"] > drops["reference"], drops
