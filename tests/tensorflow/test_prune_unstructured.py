"""prune_unstructured on the demo CNN: measured sparsity, honest dense and gzip sizes, accuracy kept."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tf_keras

from edgeopt.data.dataset import Dataset
from edgeopt.frameworks import LoadedModel
from edgeopt.frameworks.tensorflow.backend import TensorFlowBackend
from edgeopt.frameworks.tensorflow.pruning import kernel_sparsity
from edgeopt.frameworks.tensorflow.runtime import accuracy, load_tflite
from edgeopt.techniques import TechniqueOutput

from .conftest import run_technique


def _gzip(path: Path) -> int:
    return len(gzip.compress(path.read_bytes(), 9))


@pytest.fixture(scope="module")
def pruned(keras_demo: LoadedModel, digits_keras: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return run_technique("prune_unstructured", keras_demo, digits_keras, tmp_path_factory.mktemp("prune"))


def test_half_of_the_kernel_weights_are_zero(pruned: TechniqueOutput, keras_demo: LoadedModel) -> None:
    assert abs(kernel_sparsity(pruned.model) - 0.5) <= 0.01
    stats = TensorFlowBackend().model_stats(keras_demo, pruned)  # what the report shows
    assert abs(stats["sparsity"] - 0.5) <= 0.01
    assert kernel_sparsity(keras_demo.model) < 0.01  # the shared source model was not pruned


def test_zeros_survive_into_the_tflite_file(pruned: TechniqueOutput) -> None:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(pruned.artifact))
    interpreter.allocate_tensors()
    kernels = []
    for detail in interpreter.get_tensor_details():
        if len(detail["shape"]) >= 2 and detail["name"].count("/") and "conv" in detail["name"].lower():
            try:
                kernels.append(interpreter.get_tensor(detail["index"]))
            except ValueError:
                continue
    zeros = sum(int(np.count_nonzero(k == 0)) for k in kernels)
    assert kernels and zeros / sum(k.size for k in kernels) >= 0.45


def test_sizes_are_reported_honestly(pruned: TechniqueOutput, tf_baseline: TechniqueOutput) -> None:
    dense, base = pruned.artifact.stat().st_size, tf_baseline.artifact.stat().st_size
    assert abs(dense - base) / base < 0.02  # the dense file does not shrink...
    assert _gzip(tf_baseline.artifact) / _gzip(pruned.artifact) >= 1.6  # ...its compressed download does
    assert pruned.extra["dense_bytes"] == dense and pruned.extra["gzip_bytes"] == _gzip(pruned.artifact)
    assert f"{dense:,}" in pruned.notes and "no faster" in pruned.notes
    assert "Not pruned" not in pruned.notes  # every demo layer with a kernel was pruned
    assert pruned.precision == "fp32" and pruned.formats["keras"].is_file()


def test_accuracy_drop_within_one_point(
    pruned: TechniqueOutput, tf_baseline_accuracy: float, digits_keras: Dataset
) -> None:
    got = accuracy(load_tflite(pruned.artifact), digits_keras.x_test, digits_keras.y_test)
    assert tf_baseline_accuracy - got <= 0.01


def test_saved_keras_file_reloads_with_the_zeros(pruned: TechniqueOutput) -> None:
    reloaded = tf_keras.models.load_model(pruned.formats["keras"], compile=False)
    assert abs(kernel_sparsity(reloaded) - 0.5) <= 0.01


class Scale(tf_keras.layers.Layer):
    """A custom layer with a weight: tfmot has no pruning rule for it."""

    def build(self, input_shape: Any) -> None:
        self.gain = self.add_weight(name="gain", shape=(input_shape[-1],), initializer="ones")

    def call(self, x: Any) -> Any:
        return x * self.gain


def _model_with(layer: Any) -> LoadedModel:
    model = tf_keras.Sequential(
        [
            tf_keras.layers.InputLayer((32, 32, 1)),
            tf_keras.layers.Conv2D(4, 3),
            layer,
            tf_keras.layers.GlobalAveragePooling2D(),
            tf_keras.layers.Dense(10),
        ]
    )
    return LoadedModel("tensorflow", model, "keras", (32, 32, 1), 10)


def test_a_custom_layer_with_weights_is_left_unpruned_and_named(digits_keras: Dataset, tmp_work: Path) -> None:
    """tfmot has no rule for a user's layer class: the layers around it are pruned, it is named in the notes."""
    output = run_technique("prune_unstructured", _model_with(Scale(name="gain")), digits_keras, tmp_work, epochs=0)
    assert "Scale (gain): tfmot has no pruning rule for this layer type" in output.notes
    conv = next(layer for layer in output.model.layers if isinstance(layer, tf_keras.layers.Conv2D))
    assert abs(float(np.mean(conv.get_weights()[0] == 0)) - 0.5) <= 0.05


def test_a_lambda_layer_without_weights_is_pruned_around(digits_keras: Dataset, tmp_work: Path) -> None:
    loaded = _model_with(tf_keras.layers.Lambda(lambda t: t * 2.0))
    output = run_technique("prune_unstructured", loaded, digits_keras, tmp_work, epochs=0)
    assert abs(kernel_sparsity(output.model) - 0.5) <= 0.01
    assert "not fine-tuned" in output.notes


def test_layers_tfmot_leaves_dense_are_named_in_the_notes(digits_keras: Dataset, tmp_work: Path) -> None:
    output = run_technique(
        "prune_unstructured", _model_with(tf_keras.layers.DepthwiseConv2D(3)), digits_keras, tmp_work, epochs=0
    )
    assert "DepthwiseConv2D (36 weights)" in output.notes
    assert kernel_sparsity(output.model) < 0.5
