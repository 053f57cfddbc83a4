"""adapt(): resizing, channel conversion and normalization, checked against hand values and Pillow."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from edgeopt.data import Dataset, adapt, load_dataset
from edgeopt.data.adapt import resize_images
from edgeopt.errors import InvalidInput


def tiny(images: np.ndarray) -> Dataset:
    images = images.astype(np.float32)
    labels = np.arange(len(images)) % 2
    return Dataset("tiny", images, labels, images[:1], labels[:1], num_classes=2, info={"seed": 0})


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


def test_digits_upscaled_to_32x32_rgb(digits: Dataset) -> None:
    data = adapt(digits, 32, 32, 3)
    assert data.x_train.shape == (len(digits.y_train), 32, 32, 3) and data.x_test.shape[1:] == (32, 32, 3)
    assert data.x_train.dtype == np.float32
    assert data.x_train.min() >= 0.0 and data.x_train.max() <= 1.0
    np.testing.assert_array_equal(data.x_train[..., 0], data.x_train[..., 2])
    np.testing.assert_array_equal(data.y_train, digits.y_train)
    # 4x4 block means of the upscaled image track the original 8x8 pixels (same content, only smoothed).
    blocks = data.x_test[..., 0].reshape(-1, 8, 4, 8, 4).mean(axis=(2, 4)).ravel()
    assert np.corrcoef(blocks, digits.x_test.ravel())[0, 1] > 0.95
    steps = data.info["preprocessing"]
    assert steps["from"] == [8, 8, 1] and steps["to"] == [32, 32, 3]
    assert "bilinear" in steps["resize"] and "repeat" in steps["channels"]
    assert data.info["seed"] == digits.info["seed"]
    assert json.loads(json.dumps(data.info)) == data.info


def test_bilinear_hand_values_half_pixel_centres() -> None:
    row = np.array([0.0, 1.0], dtype=np.float32).reshape(1, 1, 2, 1)
    np.testing.assert_allclose(resize_images(row, 1, 4).ravel(), [0.0, 0.25, 0.75, 1.0])
    ramp = np.array([0.0, 1.0, 2.0, 3.0], dtype=np.float32).reshape(1, 1, 4, 1)
    # Shrinking by 2: triangle of half-width 2 around centres 0.5 and 2.5, renormalised at the border.
    np.testing.assert_allclose(resize_images(ramp, 1, 2).ravel(), [1.25 / 1.75, 4.0 / 1.75], rtol=1e-6)


@pytest.mark.parametrize(("src", "dst"), [((8, 8), (32, 32)), ((28, 28), (10, 14)), ((5, 7), (3, 2))])
def test_resize_matches_pillow_bilinear(src: tuple[int, int], dst: tuple[int, int]) -> None:
    image = np.random.default_rng(0).random(src).astype(np.float32)
    expected = np.asarray(Image.fromarray(image, mode="F").resize(dst[::-1], Image.Resampling.BILINEAR))
    np.testing.assert_allclose(resize_images(image[None, ..., None], *dst)[0, ..., 0], expected, atol=1e-5)


def test_rgb_to_grey_uses_luminance_and_normalization_per_channel() -> None:
    pixels = np.zeros((2, 2, 2, 3), dtype=np.float32)
    pixels[..., 0] = 1.0  # pure red
    grey = adapt(tiny(pixels), 2, 2, 1)
    np.testing.assert_allclose(grey.x_train, 0.299, rtol=1e-6)
    assert "luma" in grey.info["preprocessing"]["channels"]
    norm = adapt(tiny(pixels), 2, 2, 3, normalization=((0.5, 0.0, 0.0), (0.5, 1.0, 2.0)))
    np.testing.assert_allclose(norm.x_train[0, 0, 0], [1.0, 0.0, 0.0])
    assert norm.info["preprocessing"]["normalization"] == {"mean": [0.5, 0.0, 0.0], "std": [0.5, 1.0, 2.0]}
    assert "resize" not in norm.info["preprocessing"]


@pytest.mark.parametrize(
    ("size", "channels", "normalization", "phrase"),
    [
        ((8, 8), 4, None, "4 input channels"),
        ((8, 8), 2, None, "2 input channels"),
        ((0, 8), 1, None, "at least 1"),
        ((8, 8), 1, (0.5, 0.0), "std must be positive"),
        ((8, 8), 3, ((0.1, 0.2), 1.0), "one number or 3 numbers"),
    ],
)
def test_unbridgeable_mismatch_is_invalid_input(size, channels, normalization, phrase: str) -> None:
    with pytest.raises(InvalidInput, match=phrase):
        adapt(tiny(np.zeros((2, 8, 8, 1))), *size, channels, normalization)


def test_source_with_unsupported_channels_and_memory_limit() -> None:
    with pytest.raises(InvalidInput, match="has 2 channels"):
        adapt(tiny(np.zeros((2, 4, 4, 2))), 4, 4, 3)
    with pytest.raises(InvalidInput, match="max_train / max_test"):
        adapt(tiny(np.zeros((2, 4, 4, 1))), 224, 224, 3, max_bytes=1_000_000)


def test_data_and_measure_never_import_a_framework() -> None:
    code = (
        "import sys, edgeopt.data, edgeopt.measure, edgeopt.data.custom, edgeopt.data.presets;"
        "bad = [m for m in ('torch', 'tensorflow', 'keras', 'torchvision') if m in sys.modules];"
        "sys.exit(repr(bad) if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_imagenet_normalization_is_recorded_as_given() -> None:
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    data = adapt(tiny(np.full((2, 4, 4, 3), 0.5)), 4, 4, 3, normalization=(mean, std))
    assert data.info["preprocessing"]["normalization"] == {"mean": list(mean), "std": list(std)}
    assert data.x_train.dtype == np.float32
    np.testing.assert_allclose(data.x_train[0, 0, 0], (0.5 - np.array(mean)) / np.array(std), rtol=1e-6)
