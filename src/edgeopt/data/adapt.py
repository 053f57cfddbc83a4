"""Match a dataset to a model's input: size, channel count and normalization, recorded for reproducibility.

Pure numpy, no torch or TensorFlow: the service imports this package to validate uploads. Resizing is separable
linear interpolation with half-pixel centres (the convention of ``torch.nn.functional.interpolate(...,
align_corners=False)``, ``tf.image.resize`` and Pillow); when shrinking, the triangle filter is widened by the scale
factor (antialiasing, as Pillow and ``antialias=True`` do) so thin strokes do not vanish between samples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeopt.data.dataset import Dataset
from edgeopt.errors import InvalidInput

# ITU-R BT.601 luma weights, the ones Pillow's convert("L") and most vision libraries use.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)
RESIZE_METHOD = "bilinear, half-pixel centres, antialiased when shrinking"
SUPPORTED_CHANNELS = (1, 3)
DEFAULT_MAX_BYTES = 8 * 1024**3
_BATCH = 512  # images resized per step, so temporaries stay small whatever the dataset size


def _axis_weights(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) matrix of a linear (triangle) filter; rows sum to 1."""
    scale = in_size / out_size
    support = max(scale, 1.0)  # widen the triangle when shrinking (antialias); plain bilinear when growing
    centres = (np.arange(out_size) + 0.5) * scale - 0.5
    distance = np.abs(centres[:, None] - np.arange(in_size)[None, :]) / support
    weights = np.clip(1.0 - distance, 0.0, None)
    # Every centre lies within half a pixel of the image, so each row has weight; renormalising at the borders
    # is the same as clamping to the edge pixel.
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def resize_images(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize float NHWC images to (height, width); returns float32, unchanged values for a same-size call."""
    if height < 1 or width < 1:
        raise InvalidInput(f"Cannot resize images to {height}x{width}: both sides must be at least 1 pixel.")
    n, in_h, in_w, channels = images.shape
    if (in_h, in_w) == (height, width):
        return images.astype(np.float32, copy=False)
    rows, cols = _axis_weights(in_h, height), _axis_weights(in_w, width)
    out = np.empty((n, height, width, channels), dtype=np.float32)
    for start in range(0, n, _BATCH):
        chunk = images[start : start + _BATCH].astype(np.float32, copy=False)
        out[start : start + _BATCH] = np.einsum("oh,nhwc,pw->nopc", rows, chunk, cols, optimize=True)
    return out


_CHANNEL_CONVERSIONS = {
    (1, 3): "grey to RGB (channel repeated)",
    (3, 1): "RGB to grey (ITU-R BT.601 luma 0.299 R + 0.587 G + 0.114 B)",
}


def _convert_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """1 -> 3 by repetition, 3 -> 1 by luma; other counts were refused before."""
    current = images.shape[-1]
    if current == channels:
        return images
    if current == 1:
        return np.repeat(images, channels, axis=-1)
    return np.tensordot(images, LUMA_WEIGHTS, axes=([-1], [0]))[..., None].astype(np.float32)


def _per_channel(values: float | Sequence[float], channels: int, what: str) -> np.ndarray:
    array = np.atleast_1d(np.asarray(values, dtype=np.float64))  # float64 so the recorded values read as given
    if array.ndim != 1 or array.size not in (1, channels):
        raise InvalidInput(f"Normalization {what} must be one number or {channels} numbers, got {values!r}.")
    if not np.all(np.isfinite(array)):
        raise InvalidInput(f"Normalization {what} must be finite numbers, got {values!r}.")
    return np.broadcast_to(array, (channels,)).copy()


def adapt(
    dataset: Dataset,
    height: int,
    width: int,
    channels: int,
    normalization: tuple[float | Sequence[float], float | Sequence[float]] | None = None,
    *,
    value_scale: float = 1.0,
    channel_order: str = "rgb",
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Dataset:
    """Return ``dataset`` resized to (height, width), with ``channels`` channels, normalised when asked.

    After resizing, values (0..1) are multiplied by ``value_scale`` (255 for a model trained on 0..255), colour
    channels are reversed for ``channel_order="bgr"``, then ``normalization`` (mean, std), each one number or one
    per channel in that value range, is applied as ``(x - mean) / std``. Everything done is recorded in
    ``info["preprocessing"]``. ``max_bytes`` refuses a result that would not fit in memory with a hint instead of
    an out-of-memory kill (224x224 RGB float32 is 0.6 MB per image).
    """
    source_h, source_w, source_c = dataset.image_shape
    if channels not in SUPPORTED_CHANNELS:
        raise InvalidInput(
            f"The model expects {channels} input channels; only 1 (greyscale) or 3 (RGB) can be fed from images."
        )
    if source_c not in SUPPORTED_CHANNELS:
        raise InvalidInput(f"Dataset '{dataset.name}' has {source_c} channels; only 1 or 3 can be adapted.")
    if height < 1 or width < 1:
        raise InvalidInput(f"The model's input size {height}x{width} is invalid: both sides must be at least 1.")
    count = len(dataset.y_train) + len(dataset.y_test)
    needed = count * height * width * channels * 4
    if needed > max_bytes:
        raise InvalidInput(
            f"Adapting {count} images of '{dataset.name}' to {height}x{width}x{channels} needs {needed / 1e9:.1f} GB "
            f"(limit {max_bytes / 1e9:.1f} GB); use fewer images (max_train / max_test) or a smaller input size."
        )
    steps: dict[str, Any] = {"from": [source_h, source_w, source_c], "to": [height, width, channels]}
    if (source_h, source_w) != (height, width):
        steps["resize"] = RESIZE_METHOD
    if source_c != channels:
        steps["channels"] = _CHANNEL_CONVERSIONS[(source_c, channels)]
    mean = std = None
    if normalization is not None:
        mean = _per_channel(normalization[0], channels, "mean")
        std = _per_channel(normalization[1], channels, "std")
        if np.any(std <= 0):
            raise InvalidInput(f"Normalization std must be positive, got {normalization[1]!r}.")
        steps["normalization"] = {"mean": mean.tolist(), "std": std.tolist()}
    if value_scale != 1.0:
        steps["value_range"] = f"0..{value_scale:g}"
    reverse = channel_order == "bgr" and channels == 3
    if reverse:
        steps["channel_order"] = "BGR"

    def transform(images: np.ndarray) -> np.ndarray:
        out = _convert_channels(resize_images(images, height, width), channels)
        if value_scale != 1.0:
            out = out * np.float32(value_scale)
        if reverse:
            out = out[..., ::-1]
        if mean is not None and std is not None:
            out = (out - mean.astype(np.float32)) / std.astype(np.float32)
        return out.astype(np.float32, copy=False)

    x_train, x_test = transform(dataset.x_train), transform(dataset.x_test)
    previous = dataset.info.get("preprocessing")
    info = {**dataset.info, "preprocessing": steps if previous is None else {**steps, "earlier": previous}}
    return dataclasses.replace(dataset, x_train=x_train, x_test=x_test, info=info)
