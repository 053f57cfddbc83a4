"""Keras model -> deployable ``.tflite`` (FP32 or full-integer INT8), and Keras model -> ``.keras`` download.

``from_keras_model`` handles ``tf_keras`` and Keras 3 models alike and keeps the batch dimension dynamic. (Going
through ``from_concrete_functions`` instead gave NaN outputs for Keras 3 models when the model was passed as the
trackable object, and the deprecated conversion path without it.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from edgeopt.data.dataset import Dataset
from edgeopt.errors import TechniqueFailed
from edgeopt.frameworks.tensorflow import keras_compat  # sets TF_USE_LEGACY_KERAS before tf.keras is used


def _check_single_input(model: Any) -> None:
    if isinstance(model.input_shape, list):
        raise TechniqueFailed("Models with several inputs cannot be converted; EdgeOpt handles image classifiers.")


def representative_dataset(data: Dataset, samples: int, seed: int = 0) -> Iterator[list[np.ndarray]]:
    """Calibration images for full-integer quantization, always from the TRAIN split (the test split is for scoring).

    A fixed random subset, one image per step: the converter calibrates activation ranges from what it sees.
    """
    count = min(samples, len(data.x_train))
    order = np.random.default_rng(seed).permutation(len(data.x_train))[:count]
    for index in order:
        yield [data.x_train[index : index + 1].astype(np.float32)]


def _converter(model: Any) -> tf.lite.TFLiteConverter:
    """From the Keras model, or from the folder of a bare SavedModel graph (its serving signature: one input)."""
    from edgeopt.frameworks.tensorflow.io import SavedModelGraph

    if isinstance(model, SavedModelGraph):
        return tf.lite.TFLiteConverter.from_saved_model(str(model.directory))
    _check_single_input(model)
    return tf.lite.TFLiteConverter.from_keras_model(model)


def to_tflite(
    model: Any,
    path: Path,
    *,
    int8_data: Dataset | None = None,
    calibration_samples: int = 256,
    io_int8: bool = True,
    seed: int = 0,
) -> Path:
    """Write ``model`` as a ``.tflite`` file: FP32 without ``int8_data``, else full-integer INT8.

    INT8 means weights and activations in int8 with int8 built-in kernels only (the converter fails rather than
    silently leaving float ops); with ``io_int8`` the input and output tensors are int8 too, so the board feeds
    quantized pixels directly. ``runtime.load_tflite`` reads the quantization parameters back from the file.
    """
    converter = _converter(model)
    if int8_data is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: representative_dataset(int8_data, calibration_samples, seed)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if io_int8:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    return _write(converter, path, "INT8" if int8_data is not None else "FP32")


def _write(converter: tf.lite.TFLiteConverter, path: Path, kind: str) -> Path:
    try:
        flat = converter.convert()
    except Exception as exc:  # noqa: BLE001 - the converter raises ConverterError and plain exceptions
        raise TechniqueFailed(f"TFLite {kind} conversion failed: {str(exc).strip().splitlines()[0][:300]}") from exc
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(flat)
    return path


def save_keras(model: Any, path: Path) -> Path:
    """Save the Keras model the user can download next to the ``.tflite`` (native ``.keras`` format).

    The techniques add ``keras_download_note(model)`` to their notes: it says how to load a file that names one of
    the functions EdgeOpt registers for Keras 3 models."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def keras_download_note(model: Any) -> str:
    """A sentence for the result's notes when the downloadable ``.keras`` names a function EdgeOpt registered
    (``keras_compat.KERAS3_ACTIVATIONS``: Keras 3's hard_silu, which tf_keras does not define), else "".

    Without it, loading the download outside EdgeOpt fails with tf_keras's "Unknown activation function"."""
    config = json.dumps(model.get_config(), default=str)
    names = {keras_compat.registered_name(fn) for fn in keras_compat.KERAS3_ACTIVATIONS.values()}
    named = sorted(name for name in names if f'"{name}"' in config)
    if not named:
        return ""
    objects = ", ".join(f'"{name}": hard_silu' for name in named)
    return (
        " The .keras file is a tf_keras model that uses Keras 3's hard_silu activation, which tf_keras does not "
        f"define: load it with tf_keras.models.load_model(path, custom_objects={{{objects}}}), where "
        "hard_silu(x) = x * tf.nn.relu6(x + 3) / 6. The .tflite file needs nothing of the kind."
    )
