"""The declared input convention: validation, what it does to images, and refusals a model cannot take."""

from __future__ import annotations

import numpy as np
import pytest

from edgeopt.cli import parse_preprocessing
from edgeopt.data import adapt
from edgeopt.data.dataset import Dataset
from edgeopt.errors import InvalidInput
from edgeopt.preprocessing import Preprocessing


def _dataset() -> Dataset:
    x = np.zeros((4, 8, 8, 3), dtype=np.float32)
    x[..., 0] = 1.0  # pure red, values in 0..1
    y = np.arange(4) % 2
    return Dataset(name="red", x_train=x, y_train=y, x_test=x.copy(), y_test=y.copy(), num_classes=2, info={})


def test_presets_give_their_statistics_in_the_declared_range_and_order() -> None:
    assert Preprocessing(preset="none").normalization() is None
    mean, std = Preprocessing(preset="imagenet", value_range="0-255", channel_order="bgr").normalization()
    assert mean == pytest.approx([0.406 * 255, 0.456 * 255, 0.485 * 255])
    assert std == pytest.approx([0.225 * 255, 0.224 * 255, 0.229 * 255])
    assert Preprocessing(preset="imagenet").describe() == "the model's input size, RGB, 0..1, ImageNet mean/std"


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"preset": "custom", "mean": [0.5]}, "needs both mean and std"),
        ({"preset": "custom", "mean": [0.5, 0.5], "std": [0.2, 0.2]}, "one number per channel"),
        ({"preset": "custom", "mean": [0.5], "std": [0.0]}, "std must be positive"),
        ({"preset": "imagenet", "mean": [0.5, 0.5, 0.5]}, "choose preset 'custom'"),
        ({"input_size": [4, 4]}, "8 to 1024 pixels"),
    ],
)
def test_contradictions_are_refused(values: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        Preprocessing(**values)


def test_bgr_0_255_with_custom_statistics_reaches_the_pixels() -> None:
    declared = Preprocessing(preset="custom", value_range="0-255", channel_order="bgr", mean=[0, 0, 100], std=[1, 1, 2])
    out = adapt(_dataset(), 8, 8, 3, normalization=declared.normalization(), value_scale=255.0, channel_order="bgr")
    pixel = out.x_test[0, 0, 0]
    # red (1, 0, 0) in 0..1 -> (255, 0, 0) -> BGR (0, 0, 255) -> ((0-0)/1, (0-0)/1, (255-100)/2)
    assert pixel.tolist() == pytest.approx([0.0, 0.0, 77.5])
    assert out.info["preprocessing"]["channel_order"] == "BGR" and out.info["preprocessing"]["value_range"] == "0..255"


def test_cli_options_build_the_declaration_or_say_which_option_is_wrong() -> None:
    assert parse_preprocessing(None, None, None, None, None, None) is None
    declared = parse_preprocessing(None, "224x224", "BGR", "0-255", "1,2,3", "4,5,6")
    assert declared.preset == "custom" and declared.input_size == [224, 224] and declared.channel_order == "bgr"
    with pytest.raises(InvalidInput, match="--input-size takes HEIGHTxWIDTH"):
        parse_preprocessing(None, "224", None, None, None, None)
    with pytest.raises(InvalidInput, match="--channel-order"):
        parse_preprocessing(None, None, "grb", None, None, None)
    with pytest.raises(InvalidInput, match="--preprocessing"):
        parse_preprocessing("imagenet21k", None, None, None, None, None)
