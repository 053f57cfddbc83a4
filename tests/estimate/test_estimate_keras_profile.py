"""profile_keras on Keras 3 and tf_keras models (kept apart from the torch tests: TF import-order hazard)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
keras = pytest.importorskip("keras")
tf_keras = pytest.importorskip("tf_keras")

from edgeopt.estimate.estimator import estimate_all  # noqa: E402
from edgeopt.estimate.graph import ModelProfile  # noqa: E402
from edgeopt.estimate.keras_profile import profile_keras  # noqa: E402


@pytest.fixture(scope="session")
def mobilenet_v2() -> ModelProfile:
    return profile_keras(keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3)))


def test_keras3_mobilenet_v2_matches_published_counts(mobilenet_v2: ModelProfile) -> None:
    # keras.applications MobileNetV2: 3,538,984 parameters (Keras counts BN moving statistics), 300 M MACs.
    assert mobilenet_v2.params == 3_538_984
    assert mobilenet_v2.macs == pytest.approx(300.8e6, rel=0.01)
    assert mobilenet_v2.input_shape == (224, 224, 3)
    ops = [layer.op for layer in mobilenet_v2.layers]
    assert ops.count("depthwise_conv") == 17 and ops.count("add") == 10
    pads = [layer for layer in mobilenet_v2.layers if layer.kind == "pad"]
    assert pads and all(layer.fused for layer in pads)  # XNNPACK folds them into the convolution's padding


def test_tf_keras_and_keras3_agree_on_the_same_architecture(mobilenet_v2: ModelProfile) -> None:
    legacy = profile_keras(tf_keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3)))
    assert legacy.params == mobilenet_v2.params
    assert legacy.macs == mobilenet_v2.macs
    assert legacy.peak_activation_elems == mobilenet_v2.peak_activation_elems
    assert estimate_all(legacy, "int8") == estimate_all(mobilenet_v2, "int8")


def test_separable_conv_residual_and_builtin_activation() -> None:
    k = tf_keras
    inputs = k.Input((8, 8, 1))
    x = k.layers.Conv2D(4, 3, activation="relu")(inputs)  # 6x6x4
    y = k.layers.SeparableConv2D(4, 3, padding="same")(x)
    z = k.layers.Add()([x, y])
    out = k.layers.Dense(10)(k.layers.Flatten()(z))
    profile = profile_keras(k.Model(inputs, out))
    names = [layer.name for layer in profile.layers]
    assert [layer.op for layer in profile.layers] == ["conv", "activation", "depthwise_conv", "conv", "add", "dense"]
    assert profile.layers[1].fused  # the ReLU becomes the convolution's output clamp
    assert profile.macs == 36 * 4 * 9 + 36 * 4 * 9 + 36 * 4 * 4 + 144 * 10
    add = profile.layers[4]
    assert set(add.inputs) == {names[1], names[3]}
    assert profile.params == (4 * 9 + 4) + (4 * 9 + 4 * 4 + 4) + (144 * 10 + 10)


def test_nested_model_and_sparsity() -> None:
    inner = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization()])
    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(inner(inputs)))
    model = keras.Model(inputs, outputs)
    conv = inner.layers[0]
    kernel, bias = conv.get_weights()
    kernel[..., :2] = 0.0
    conv.set_weights([kernel, bias])
    profile = profile_keras(model)
    assert [layer.op for layer in profile.layers] == ["conv", "other", "dense"]
    assert profile.layers[0].inputs == ("input",) and profile.layers[1].fused
    assert profile.sparsity == pytest.approx(18 / (36 + 144 * 2))


def test_not_a_model_is_a_clear_error() -> None:
    from edgeopt.errors import InvalidInput

    with pytest.raises(InvalidInput, match="Keras model"):
        profile_keras(object())


def test_tfmot_wrappers_are_profiled_as_the_layers_they_wrap() -> None:
    tfmot = pytest.importorskip("tensorflow_model_optimization")
    k = tf_keras
    inputs = k.Input((8, 8, 1))
    x = k.layers.Conv2D(4, 3, activation="relu")(inputs)
    out = k.layers.Dense(10)(k.layers.Flatten()(x))
    plain = k.Model(inputs, out)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(plain)
    reference, wrapped = profile_keras(plain), profile_keras(pruned)
    assert wrapped.macs == reference.macs == 36 * 4 * 9 + 144 * 10
    assert wrapped.params == reference.params  # masks and thresholds are training state, not model weights
    assert [layer.op for layer in wrapped.layers] == [layer.op for layer in reference.layers]
    assert wrapped.layers[1].fused  # the wrapped convolution's ReLU is still folded
    quantized = profile_keras(tfmot.quantization.keras.quantize_model(plain))
    assert quantized.macs == reference.macs and quantized.params == reference.params
    assert [layer.op for layer in quantized.layers] == ["other", *(layer.op for layer in reference.layers)]
