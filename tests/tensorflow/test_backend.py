"""The TensorFlow backend on the demo model: baseline export, LiteRT predictor, stats, and the demo's own targets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tf_keras

from edgeopt.data.dataset import Dataset
from edgeopt.frameworks import LoadedModel, ModelSource, get_backend
from edgeopt.frameworks.tensorflow.backend import TensorFlowBackend
from edgeopt.frameworks.tensorflow.convert import to_tflite
from edgeopt.frameworks.tensorflow.io import load_tensorflow
from edgeopt.frameworks.tensorflow.runtime import io_quantization, load_tflite
from edgeopt.settings import Settings
from edgeopt.techniques import TechniqueOutput


def test_registry_finds_the_backend() -> None:
    backend = get_backend("tensorflow")
    assert (backend.framework, backend.artifact_suffix, backend.runtime) == ("tensorflow", ".tflite", "litert-xnnpack")


def test_demo_model_reaches_95_percent_in_litert(tf_baseline: TechniqueOutput, tf_baseline_accuracy: float) -> None:
    assert tf_baseline.precision == "fp32"
    assert tf_baseline.artifact.suffix == ".tflite" and tf_baseline.artifact.stat().st_size > 0
    assert tf_baseline.formats["keras"].is_file()
    assert tf_baseline_accuracy >= 0.95


def test_litert_predictions_match_keras(
    keras_demo: LoadedModel, tf_baseline: TechniqueOutput, digits_keras: Dataset
) -> None:
    x = digits_keras.x_test[:100]
    expected = keras_demo.model(x, training=False).numpy()
    got = TensorFlowBackend().artifact_predictor(tf_baseline.artifact, tf_baseline)(x)
    np.testing.assert_allclose(got, expected, atol=1e-3)
    single = load_tflite(tf_baseline.artifact)(x[:1])  # batch 1, as the latency timer calls it
    np.testing.assert_allclose(single, expected[:1], atol=1e-3)


def test_int8_runtime_scales_inputs_and_outputs(
    keras_demo: LoadedModel, digits_keras: Dataset, tf_baseline: TechniqueOutput, tmp_path: Path
) -> None:
    """An INT8 file with int8 I/O is fed quantized pixels and returns dequantized logits close to FP32's."""
    path = to_tflite(keras_demo.model, tmp_path / "int8.tflite", int8_data=digits_keras)
    quant = io_quantization(path)
    assert quant["input"]["dtype"] == "int8" and quant["output"]["dtype"] == "int8"
    assert quant["input"]["scale"] == pytest.approx(1 / 255, rel=0.05)  # pixels in [0, 1] -> 256 levels
    x = digits_keras.x_test[:200]
    fp32 = load_tflite(tf_baseline.artifact)(x)
    int8 = load_tflite(path)(x)
    assert int8.dtype == np.float32
    spread = float(np.abs(fp32).mean())
    assert float(np.abs(int8 - fp32).mean()) < 0.1 * spread
    assert np.mean(int8.argmax(1) == fp32.argmax(1)) >= 0.97


def test_model_stats_count_params_and_flops(keras_demo: LoadedModel, tf_baseline: TechniqueOutput) -> None:
    stats = TensorFlowBackend().model_stats(keras_demo, tf_baseline)
    assert stats["params"] == keras_demo.model.count_params()
    convs = 32 * 32 * (1 * 32) * 9 + 16 * 16 * (32 * 64) * 9 + 8 * 8 * (64 * 128) * 9
    assert stats["flops"] >= 2 * convs  # at least the three convolutions' multiply-adds
    assert stats["sparsity"] < 0.01
    assert stats["profile"]["layers"]


def test_bare_savedmodel_baseline_runs_with_unknown_flops(tmp_path: Path, digits_keras: Dataset) -> None:
    import shutil

    import tensorflow as tf

    model = tf_keras.Sequential(
        [tf_keras.layers.InputLayer((32, 32, 1)), tf_keras.layers.Flatten(), tf_keras.layers.Dense(10)]
    )
    tf.saved_model.save(model, str(tmp_path / "raw"))
    archive = Path(shutil.make_archive(str(tmp_path / "raw"), "zip", tmp_path / "raw"))
    loaded = load_tensorflow(ModelSource(path=archive), 10, Settings())
    backend = TensorFlowBackend()
    output = backend.export_baseline(loaded, digits_keras, tmp_path / "work")
    x = digits_keras.x_test[:10]
    np.testing.assert_allclose(backend.artifact_predictor(output.artifact, output)(x), model(x).numpy(), atol=1e-4)
    stats = backend.model_stats(loaded, output)
    assert stats["params"] == 32 * 32 * 10 + 10 and stats["flops"] == 0


def test_keras3_model_kept_as_keras3_still_exports(tmp_path: Path, digits_keras: Dataset) -> None:
    import keras

    model = keras.Sequential(
        [
            keras.Input((32, 32, 1)),
            keras.layers.Lambda(lambda t: t * 2.0),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )
    model.save(tmp_path / "k3.keras")
    loaded = load_tensorflow(ModelSource(path=tmp_path / "k3.keras"), 10, Settings(trust_pickles=True))
    assert loaded.info["keras"] == "keras3"
    output = TensorFlowBackend().export_baseline(loaded, digits_keras, tmp_path / "work")
    x = digits_keras.x_test[:10]
    np.testing.assert_allclose(load_tflite(output.artifact)(x), np.asarray(model(x)), atol=1e-4)


def test_a_fixed_batch_of_one_is_run_image_by_image(tmp_path: Path) -> None:
    inputs = tf_keras.Input((8, 8, 1), batch_size=1)
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(3)(tf_keras.layers.Flatten()(inputs)))
    path = to_tflite(model, tmp_path / "b1.tflite")
    x = np.random.default_rng(0).random((5, 8, 8, 1), dtype=np.float32)
    expected = np.concatenate([model(x[i : i + 1]).numpy() for i in range(5)])
    np.testing.assert_allclose(load_tflite(path)(x), expected, atol=1e-5)


def test_a_file_that_is_not_tflite_is_refused(tmp_path: Path) -> None:
    from edgeopt.errors import InvalidInput

    path = tmp_path / "bad.tflite"
    path.write_bytes(b"definitely not a flatbuffer")
    with pytest.raises(InvalidInput, match="not a valid .tflite"):
        load_tflite(path)
