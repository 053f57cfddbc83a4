"""ptq_int8, ptq_int4 and qat_int8 on the demo CNN: real artifacts run in LiteRT, held to the issue's targets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tf_keras

from edgeopt.data.dataset import Dataset
from edgeopt.errors import Unsupported
from edgeopt.frameworks import LoadedModel
from edgeopt.frameworks.tensorflow.runtime import accuracy, load_tflite
from edgeopt.techniques import TechniqueOutput

from .conftest import run_technique


def _accuracy(output: TechniqueOutput, data: Dataset) -> float:
    return accuracy(load_tflite(output.artifact), data.x_test, data.y_test)


def _ratio(baseline: TechniqueOutput, output: TechniqueOutput) -> float:
    return baseline.artifact.stat().st_size / output.artifact.stat().st_size


def _tensor_types(path: Path) -> set[int]:
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils

    model = tfl_flatbuffer_utils.read_model(str(path))
    return {tensor.type for subgraph in model.subgraphs for tensor in subgraph.tensors}


@pytest.fixture(scope="module")
def ptq_int8(keras_demo: LoadedModel, digits_keras: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return run_technique("ptq_int8", keras_demo, digits_keras, tmp_path_factory.mktemp("ptq_int8"))


@pytest.fixture(scope="module")
def ptq_int4(keras_demo: LoadedModel, digits_keras: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return run_technique("ptq_int4", keras_demo, digits_keras, tmp_path_factory.mktemp("ptq_int4"))


def test_ptq_int8_meets_size_and_accuracy_targets(
    ptq_int8: TechniqueOutput, tf_baseline: TechniqueOutput, tf_baseline_accuracy: float, digits_keras: Dataset
) -> None:
    assert ptq_int8.artifact.name == "ptq_int8.tflite" and ptq_int8.precision == "int8"
    assert _ratio(tf_baseline, ptq_int8) >= 3.5
    assert tf_baseline_accuracy - _accuracy(ptq_int8, digits_keras) <= 0.005
    quant = ptq_int8.extra["io_quantization"]
    assert quant["input"]["dtype"] == "int8" and quant["output"]["dtype"] == "int8"
    assert quant["input"]["scale"] > 0
    assert 9 in _tensor_types(ptq_int8.artifact)  # TensorType.INT8 weights and activations


def test_ptq_int8_does_not_touch_the_source_model(keras_demo: LoadedModel, ptq_int8: TechniqueOutput) -> None:
    assert ptq_int8.model is keras_demo.model


def test_ptq_int4_meets_size_and_accuracy_targets(
    ptq_int4: TechniqueOutput, tf_baseline: TechniqueOutput, tf_baseline_accuracy: float, digits_keras: Dataset
) -> None:
    assert ptq_int4.artifact.name == "ptq_int4.tflite" and ptq_int4.precision == "int4"
    assert _ratio(tf_baseline, ptq_int4) >= 6.0
    assert tf_baseline_accuracy - _accuracy(ptq_int4, digits_keras) <= 0.015
    assert 17 in _tensor_types(ptq_int4.artifact)  # TensorType.INT4: real 4-bit weights in the file
    assert ptq_int4.extra["recipe"] in ptq_int4.notes
    leftovers = sorted(p.name for p in ptq_int4.artifact.parent.iterdir())
    assert leftovers == ["ptq_int4.tflite"]  # candidates and the FP32 intermediate are cleaned up


def test_ptq_int4_rejects_a_group_size_the_quantizer_lacks(
    keras_demo: LoadedModel, digits_keras: Dataset, tmp_work: Path
) -> None:
    from edgeopt.errors import InvalidInput

    with pytest.raises(InvalidInput, match="group_size"):
        run_technique("ptq_int4", keras_demo, digits_keras, tmp_work, group_size=48)


def test_qat_int8_keeps_accuracy_within_ptq_plus_0_3(
    keras_demo: LoadedModel,
    digits_keras: Dataset,
    tmp_work: Path,
    ptq_int8: TechniqueOutput,
    tf_baseline: TechniqueOutput,
    tf_baseline_accuracy: float,
) -> None:
    before = [w.copy() for w in keras_demo.model.get_weights()]
    qat = run_technique("qat_int8", keras_demo, digits_keras, tmp_work, epochs=1)
    assert qat.artifact.name == "qat_int8.tflite" and qat.precision == "int8"
    assert _ratio(tf_baseline, qat) >= 3.5
    ptq_drop = tf_baseline_accuracy - _accuracy(ptq_int8, digits_keras)
    qat_drop = tf_baseline_accuracy - _accuracy(qat, digits_keras)
    assert qat_drop <= ptq_drop + 0.003
    for old, new in zip(before, keras_demo.model.get_weights(), strict=True):  # the shared model is untouched
        np.testing.assert_array_equal(old, new)


def _lambda_model() -> Any:
    return tf_keras.Sequential(
        [
            tf_keras.layers.InputLayer((32, 32, 1)),
            tf_keras.layers.Lambda(lambda t: t * 2.0, name="double"),
            tf_keras.layers.Conv2D(4, 3),
            tf_keras.layers.GlobalAveragePooling2D(),
            tf_keras.layers.Dense(10),
        ]
    )


def _loaded(model: Any) -> LoadedModel:
    return LoadedModel("tensorflow", model, "keras", (32, 32, 1), 10)


def test_qat_refuses_lambda_layers_while_ptq_int8_converts_them(digits_keras: Dataset, tmp_work: Path) -> None:
    loaded = _loaded(_lambda_model())
    with pytest.raises(Unsupported, match="Lambda layer"):
        run_technique("qat_int8", loaded, digits_keras, tmp_work)
    output = run_technique("ptq_int8", loaded, digits_keras, tmp_work)
    x = digits_keras.x_test[:20]
    expected = loaded.model(x).numpy()
    got = load_tflite(output.artifact)(x)
    assert np.mean(got.argmax(1) == expected.argmax(1)) >= 0.9


def test_qat_refuses_a_subclassed_model(digits_keras: Dataset, tmp_work: Path) -> None:
    class Classifier(tf_keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.flat = tf_keras.layers.Flatten()
            self.dense = tf_keras.layers.Dense(10)

        def call(self, x: Any) -> Any:
            return self.dense(self.flat(x))

    model = Classifier()
    model(tf_keras.Input((32, 32, 1)))
    with pytest.raises(Unsupported, match="subclassed"):
        run_technique("qat_int8", _loaded(model), digits_keras, tmp_work)


def test_qat_refuses_a_model_kept_in_keras3(digits_keras: Dataset, tmp_work: Path) -> None:
    import keras

    model = keras.Sequential([keras.Input((32, 32, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    with pytest.raises(Unsupported, match="tf_keras"):
        run_technique("qat_int8", _loaded(model), digits_keras, tmp_work)
