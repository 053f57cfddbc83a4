"""A declared input convention is applied to what the model sees, and one the model cannot take is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeopt.errors import InvalidInput
from edgeopt.frameworks import get_backend
from edgeopt.pipeline import ExperimentSpec, load_inputs
from edgeopt.preprocessing import Preprocessing
from edgeopt.settings import get_settings


def _inputs(demo_pt2: Path, tmp_path: Path, declared: Preprocessing | None):
    spec = ExperimentSpec(
        framework="pytorch", dataset="digits", device="rpi4", out_dir=tmp_path, model=demo_pt2, preprocessing=declared
    )
    return load_inputs(get_backend("pytorch"), spec, get_settings())


def test_declared_range_and_statistics_reach_the_model_input(demo_pt2: Path, tmp_path: Path) -> None:
    plain, _ = _inputs(demo_pt2, tmp_path, None)
    declared = Preprocessing(preset="custom", value_range="0-255", mean=[128.0], std=[64.0], input_size=[32, 32])
    converted, _ = _inputs(demo_pt2, tmp_path, declared)
    np.testing.assert_allclose(converted.x_test, (plain.x_test * 255.0 - 128.0) / 64.0, rtol=1e-5, atol=1e-4)
    assert converted.info["preprocessing"]["normalization"] == {"mean": [128.0], "std": [64.0]}


@pytest.mark.parametrize(
    ("declared", "needle"),
    [
        (Preprocessing(input_size=[64, 64]), "The model takes 32x32 images, but the declared input size is 64x64"),
        (Preprocessing(preset="imagenet"), "3 values per statistic but the model takes 1 input channel"),
    ],
)
def test_a_convention_the_model_cannot_take_is_refused(
    demo_pt2: Path, tmp_path: Path, declared: Preprocessing, needle: str
) -> None:
    with pytest.raises(InvalidInput, match=needle):
        _inputs(demo_pt2, tmp_path, declared)
